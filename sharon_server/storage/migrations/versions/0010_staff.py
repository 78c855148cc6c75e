"""Tables of moderator access, member cards and unmask requests (#5).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create staff_observers and unmask_requests."""
    op.create_table(
        "staff_observers",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("visible", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("since_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "room_id", name="pk_staff_observers"),
    )
    op.create_table(
        "unmask_requests",
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("member_id", sa.Text, nullable=False),
        sa.Column("requester", sa.Text, nullable=False),
        sa.Column("reason_code", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("decided_by", sa.Text, nullable=True),
        sa.Column("decided_ts", sa.BigInteger, nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.Column("expires_ts", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_unmask_requests"),
    )
    op.create_index("ix_unmask_requests_service", "unmask_requests", ["service_id", "created_ts"])


def downgrade() -> None:
    """Drop staff_observers and unmask_requests."""
    op.drop_index("ix_unmask_requests_service", table_name="unmask_requests")
    op.drop_table("unmask_requests")
    op.drop_table("staff_observers")
