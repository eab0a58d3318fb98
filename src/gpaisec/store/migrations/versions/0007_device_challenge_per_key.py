"""webauthn_challenges.purpose: room for the device proof's record of each key (device:<key id>)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 23:20:00

The issue time of the last device-proof challenge used was kept per account (purpose "device"), so
the holder of any enrolled key could void a person's challenge in flight by using a later one for
that name. It is now kept per account and key (purpose "device:<key id>", up to 26 characters); the
old per-account rows are dropped (a challenge lives two minutes: nothing of value is lost). The
downgrade drops the per-key rows and narrows the column again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM webauthn_challenges WHERE purpose = 'device'"))
    with op.batch_alter_table("webauthn_challenges", schema=None) as batch_op:
        batch_op.alter_column(
            "purpose",
            existing_type=sa.String(length=12),
            type_=sa.String(length=40),
            existing_nullable=False,
        )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM webauthn_challenges WHERE purpose LIKE 'device:%'"))
    with op.batch_alter_table("webauthn_challenges", schema=None) as batch_op:
        batch_op.alter_column(
            "purpose",
            existing_type=sa.String(length=40),
            type_=sa.String(length=12),
            existing_nullable=False,
        )
