"""totp_credentials.secret: room for a sealed seed (v1: + base64 of nonce, ciphertext and tag)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 22:10:00

The seeds themselves cannot be sealed here (the key lives in the workspace's keys directory, which a
migration does not reach): plaintext seeds are sealed on first use, or all at once by
gpaisec.access.mfa.seal_legacy_seeds. The downgrade narrows the column again and refuses while any
sealed seed is stored (it would not fit, and an older gpaisec could not read it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("totp_credentials", schema=None) as batch_op:
        batch_op.alter_column(
            "secret",
            existing_type=sa.String(length=64),
            type_=sa.String(length=255),
            existing_nullable=False,
        )


def downgrade() -> None:
    sealed = (
        op.get_bind()
        .execute(sa.text("SELECT COUNT(*) FROM totp_credentials WHERE secret LIKE '%:%'"))
        .scalar_one()
    )
    if sealed:
        raise RuntimeError(
            f"{sealed} TOTP seeds are sealed; an older gpaisec cannot read them: "
            "reset those authenticators before downgrading"
        )
    with op.batch_alter_table("totp_credentials", schema=None) as batch_op:
        batch_op.alter_column(
            "secret",
            existing_type=sa.String(length=255),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
