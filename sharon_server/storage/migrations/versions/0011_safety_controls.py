"""Tables of risk detection and member controls (#6).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create risk_flags, member_blocks and member_controls."""
    op.create_table(
        "risk_flags",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=True),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("detector", sa.Text, nullable=False),
        sa.Column("hits", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_risk_flags"),
    )
    op.create_index("ix_risk_flags_sender_pos", "risk_flags", ["sender", "pos"])
    op.create_index("ix_risk_flags_service_pos", "risk_flags", ["service_id", "pos"])
    op.create_table(
        "member_blocks",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("blocked_id", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "blocked_id", name="pk_member_blocks"),
    )
    op.create_index("ix_member_blocks_blocked_id", "member_blocks", ["blocked_id"])
    op.create_table(
        "member_controls",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("mute_words", sa.Text, nullable=False),
        sa.Column("cw_prefs", sa.Text, nullable=False),
        sa.Column("break_on", sa.Boolean, nullable=False),
        sa.Column("break_until", sa.BigInteger, nullable=True),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_member_controls"),
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("member_controls")
    op.drop_index("ix_member_blocks_blocked_id", table_name="member_blocks")
    op.drop_table("member_blocks")
    op.drop_index("ix_risk_flags_service_pos", table_name="risk_flags")
    op.drop_index("ix_risk_flags_sender_pos", table_name="risk_flags")
    op.drop_table("risk_flags")
