"""Tables of held posts, hidden events, sanctions and appeals (#6).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_BOOL = sa.Boolean(create_constraint=False)


def upgrade() -> None:
    """Create the moderation tables."""
    op.create_table(
        "mod_held",
        sa.Column("held_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=True),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("etype", sa.Text, nullable=False),
        sa.Column("state_key", sa.Text, nullable=True),
        sa.Column("txn_id", sa.Text, nullable=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("decided_ts", sa.BigInteger, nullable=True),
        sa.Column("decided_by", sa.Text, nullable=True),
        sa.Column("decision_rule", sa.Text, nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.Column("event_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("held_id", name="pk_mod_held"),
        sa.UniqueConstraint("author", "txn_id", name="uq_mod_held_author_txn_id"),
    )
    op.create_index("ix_mod_held_service_id_status", "mod_held", ["service_id", "status"])
    op.create_table(
        "mod_marks",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("hidden", _BOOL, nullable=False),
        sa.Column("redacted", _BOOL, nullable=False),
        sa.Column("cw", sa.Text, nullable=True),
        sa.Column("rule", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("by_user", sa.Text, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_mod_marks"),
    )
    op.create_table(
        "mod_premod",
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("remaining", sa.Integer, nullable=True),
        sa.Column("approved", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("service_id", "user_id", name="pk_mod_premod"),
    )
    op.create_table(
        "mod_sanctions",
        sa.Column("sanction_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("notice", sa.Text, nullable=False),
        sa.Column("issued_by", sa.Text, nullable=False),
        sa.Column("issued_ts", sa.BigInteger, nullable=False),
        sa.Column("until_ts", sa.BigInteger, nullable=True),
        sa.Column("lifted_ts", sa.BigInteger, nullable=True),
        sa.Column("lifted_by", sa.Text, nullable=True),
        sa.Column("lift_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("sanction_id", name="pk_mod_sanctions"),
    )
    op.create_index("ix_mod_sanctions_user_id", "mod_sanctions", ["user_id"])
    op.create_index("ix_mod_sanctions_service_id", "mod_sanctions", ["service_id"])
    op.create_table(
        "mod_appeals",
        sa.Column("appeal_id", sa.Text, nullable=False),
        sa.Column("sanction_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("decided_by", sa.Text, nullable=True),
        sa.Column("decided_ts", sa.BigInteger, nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("appeal_id", name="pk_mod_appeals"),
        sa.UniqueConstraint("sanction_id", name="uq_mod_appeals_sanction_id"),
    )


def downgrade() -> None:
    """Drop the moderation tables."""
    op.drop_table("mod_appeals")
    op.drop_index("ix_mod_sanctions_service_id", table_name="mod_sanctions")
    op.drop_index("ix_mod_sanctions_user_id", table_name="mod_sanctions")
    op.drop_table("mod_sanctions")
    op.drop_table("mod_premod")
    op.drop_table("mod_marks")
    op.drop_index("ix_mod_held_service_id_status", table_name="mod_held")
    op.drop_table("mod_held")
