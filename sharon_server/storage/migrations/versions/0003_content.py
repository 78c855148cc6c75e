"""Tables of the content feature: items, relations, reactions, follows, drafts, presents.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BOOL = sa.Boolean(create_constraint=False)


def upgrade() -> None:
    """Create the content tables."""
    op.create_table(
        "content_items",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("wall_owner", sa.Text, nullable=True),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.Column("last_pos", sa.BigInteger, nullable=False),
        sa.Column("child_count", sa.Integer, nullable=False),
        sa.Column("present_count", sa.Integer, nullable=False),
        sa.Column("pinned", _BOOL, nullable=False),
        sa.Column("locked", _BOOL, nullable=False),
        sa.Column("current_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_content_items"),
    )
    op.create_index("ix_content_items_room_id_last_pos", "content_items", ["room_id", "last_pos"])
    op.create_index("ix_content_items_room_id_pos", "content_items", ["room_id", "pos"])
    op.create_index("ix_content_items_service_id_type_pos", "content_items", ["service_id", "type", "pos"])
    op.create_table(
        "content_relations",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("rel", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_content_relations"),
    )
    op.create_index("ix_content_relations_parent_id_rel_pos", "content_relations", ["parent_id", "rel", "pos"])
    op.create_table(
        "content_reactions",
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("target", "key", "user_id", name="pk_content_reactions"),
    )
    op.create_table(
        "content_follows",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("followee", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "service_id", "followee", name="pk_content_follows"),
    )
    op.create_table(
        "content_drafts",
        sa.Column("draft_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.Column("published_event_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("draft_id", name="pk_content_drafts"),
    )
    op.create_index("ix_content_drafts_user_id_updated_ts", "content_drafts", ["user_id", "updated_ts"])
    op.create_table(
        "content_presents",
        sa.Column("present_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("picture_media", sa.Text, nullable=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("removed", _BOOL, nullable=False),
        sa.PrimaryKeyConstraint("present_id", name="pk_content_presents"),
    )


def downgrade() -> None:
    """Drop the content tables."""
    for table in ("content_presents", "content_drafts", "content_follows", "content_reactions",
                  "content_relations", "content_items"):
        op.drop_table(table)
