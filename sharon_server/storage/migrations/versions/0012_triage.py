"""Tables of reports, the triage queue and the duty rota (#6).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BOOL = sa.Boolean(create_constraint=False)


def upgrade() -> None:
    """Create the triage tables."""
    op.create_table(
        "triage_items",
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("kinds", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=True),
        sa.Column("event_id", sa.Text, nullable=True),
        sa.Column("subject_user", sa.Text, nullable=True),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("risk_score", sa.Integer, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("ref", sa.Text, nullable=True),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("claimed_by", sa.Text, nullable=True),
        sa.Column("escalated_ts", sa.BigInteger, nullable=True),
        sa.Column("offer_stage", sa.Integer, nullable=False),
        sa.Column("hidden", _BOOL, nullable=False),
        sa.Column("resolved_by", sa.Text, nullable=True),
        sa.Column("resolved_ts", sa.BigInteger, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("item_id", name="pk_triage_items"),
    )
    op.create_index("ix_triage_items_status_service_id", "triage_items", ["status", "service_id"])
    op.create_index("ix_triage_items_event_id", "triage_items", ["event_id"])
    op.create_table(
        "triage_reports",
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("reporter", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=True),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("closed_ts", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("report_id", name="pk_triage_reports"),
    )
    op.create_index("ix_triage_reports_item_id", "triage_reports", ["item_id"])
    op.create_index("ix_triage_reports_reporter_created_ts", "triage_reports", ["reporter", "created_ts"])
    op.create_table(
        "triage_duty",
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("since_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("service_id", "user_id", name="pk_triage_duty"),
    )


def downgrade() -> None:
    """Drop the triage tables."""
    op.drop_table("triage_duty")
    op.drop_index("ix_triage_reports_reporter_created_ts", table_name="triage_reports")
    op.drop_index("ix_triage_reports_item_id", table_name="triage_reports")
    op.drop_table("triage_reports")
    op.drop_index("ix_triage_items_event_id", table_name="triage_items")
    op.drop_index("ix_triage_items_status_service_id", table_name="triage_items")
    op.drop_table("triage_items")
