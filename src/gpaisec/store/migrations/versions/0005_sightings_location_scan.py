"""sightings: a covering index on (location_id, scan_id, version_id) for the registry view

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 17:55:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_sightings_location_scan_version",
        "sightings",
        ["location_id", "scan_id", "version_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_sightings_location_scan_version", table_name="sightings")
