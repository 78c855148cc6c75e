"""Tables of the social feature: hashtags, approved tags, notifications, the search corpus.

The full-text index itself is not here: SQLite's FTS5 virtual table (and its shadow tables)
and PostgreSQL's GIN expression index cannot be described by SQLAlchemy metadata, and the
schema-matches-migrations test compares every table. ``search_docs`` is the indexed corpus;
``sharon_server.storage.social.ensure_search_index`` creates the dialect's index over it at
start-up (idempotently) and rebuilds it from ``search_docs`` when it is new.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import POS_TYPE, metadata

__all__ = ["social_tags", "social_tag_approvals", "notifications", "search_docs"]

social_tags = sa.Table(
    "social_tags",
    metadata,
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("tag", sa.Text, nullable=False),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("service_id", "tag", "pos"),
    sa.Index("ix_social_tags_ts", "ts"),
    sqlite_with_rowid=False,
)
"""One row per (service, tag, event): browse by tag newest first; rebuild trending by ``ts``."""

social_tag_approvals = sa.Table(
    "social_tag_approvals",
    metadata,
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("tag", sa.Text, nullable=False),
    sa.Column("approved_by", sa.Text, nullable=False),
    sa.Column("approved_ts", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("service_id", "tag"),
)
"""Tags staff of a service have allowed to trend."""

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("is_read", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("payload", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("user_id", "pos"),
    sqlite_with_rowid=False,
)
"""One member's feed: at most one notification per (member, event), keyed by the event's pos.
A notice (migration 0014: a sanction, a held-post decision, a report outcome, a discharge)
has no event: its ``pos`` is a stream position reserved for it (``rooms.reserve_pos``),
``room_id``/``event_id``/``actor`` are ``""`` and ``payload`` is its JSON."""

search_docs = sa.Table(
    "search_docs",
    metadata,
    sa.Column("pos", POS_TYPE, primary_key=True, autoincrement=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_search_docs_room_id_pos", "room_id", "pos"),
)
"""The searchable text of each event (on SQLite ``pos`` is the rowid the FTS5 index uses)."""
