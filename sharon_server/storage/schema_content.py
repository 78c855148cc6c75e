"""Tables of the content feature (forums, walls, blogs, reactions, presents) on the shared metadata.

Everything but drafts, follows and the presents catalogue is derived from events, written
in the event's own transaction (``EventType.derive``), so these indexes never disagree with
the event stream. Timestamps are ms since the epoch; ``*pos`` are stream positions.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = [
    "content_items", "content_relations", "content_reactions", "content_follows",
    "content_drafts", "content_presents",
]

_BOOL = sa.Boolean(create_constraint=False)

content_items = sa.Table(
    "content_items",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
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
    sa.Index("ix_content_items_room_id_last_pos", "room_id", "last_pos"),
    sa.Index("ix_content_items_room_id_pos", "room_id", "pos"),
    sa.Index("ix_content_items_service_id_type_pos", "service_id", "type", "pos"),
)
"""Top-level posts (threads, wall posts, blog posts, presents given to a member) with their
reply/comment and present counts, latest activity and the event ID of the current version."""

content_relations = sa.Table(
    "content_relations",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("rel", sa.Text, nullable=False),
    sa.Column("parent_id", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.Index("ix_content_relations_parent_id_rel_pos", "parent_id", "rel", "pos"),
)
"""Replies, comments, edits and attached presents, pointing at their item (``rel``)."""

content_reactions = sa.Table(
    "content_reactions",
    metadata,
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("target", "key", "user_id"),
)
"""The current reactions: one row per (target event, key, user)."""

content_follows = sa.Table(
    "content_follows",
    metadata,
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("followee", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("user_id", "service_id", "followee"),
)
"""Whose walls a member follows, per service."""

content_drafts = sa.Table(
    "content_drafts",
    metadata,
    sa.Column("draft_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("updated_ts", sa.BigInteger, nullable=False),
    sa.Column("published_event_id", sa.Text, nullable=True),
    sa.Index("ix_content_drafts_user_id_updated_ts", "user_id", "updated_ts"),
)
"""Private blog drafts; not events until published (then ``published_event_id`` is set)."""

content_presents = sa.Table(
    "content_presents",
    metadata,
    sa.Column("present_id", sa.Text, primary_key=True),
    sa.Column("service_id", sa.Text, nullable=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("picture_media", sa.Text, nullable=True),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("removed", _BOOL, nullable=False),
)
"""The presents catalogue: server-wide (``service_id`` null) or one service's own."""
