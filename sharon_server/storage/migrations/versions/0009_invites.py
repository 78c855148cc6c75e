"""Tables of clinician invites, discharge records and pseudonym screening (#5).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create service_invites and service_discharges."""
    op.create_table(
        "service_invites",
        sa.Column("invite_id", sa.Text, primary_key=True),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("code_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("used_by", sa.Text, nullable=True),
        sa.Column("closed_by", sa.Text, nullable=True),
        sa.Column("closed_ts", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_service_invites_service", "service_invites", ["service_id", "created_ts"])
    op.create_index("ix_service_invites_status", "service_invites", ["status", "expires_ts"])
    op.create_table(
        "service_discharges",
        sa.Column("discharge_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("discharged_by", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_service_discharges_member", "service_discharges", ["service_id", "user_id"])


def downgrade() -> None:
    """Drop service_discharges and service_invites."""
    op.drop_index("ix_service_discharges_member", table_name="service_discharges")
    op.drop_table("service_discharges")
    op.drop_index("ix_service_invites_status", table_name="service_invites")
    op.drop_index("ix_service_invites_service", table_name="service_invites")
    op.drop_table("service_invites")
