"""Tables of the social feature: tags, tag approvals, notifications, search corpus.

The full-text index over ``search_docs`` (SQLite FTS5 / PostgreSQL GIN) is created at
start-up by ``sharon_server.storage.social.ensure_search_index``, not here: see
``schema_social.py`` for why.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_POS = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the social tables."""
    op.create_table(
        "social_tags",
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("service_id", "tag", "pos", name="pk_social_tags"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_social_tags_ts", "social_tags", ["ts"])
    op.create_table(
        "social_tag_approvals",
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("approved_by", sa.Text, nullable=False),
        sa.Column("approved_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("service_id", "tag", name="pk_social_tag_approvals"),
    )
    op.create_table(
        "notifications",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("is_read", sa.Boolean(create_constraint=False), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "pos", name="pk_notifications"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "search_docs",
        sa.Column("pos", _POS, nullable=False, autoincrement=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("pos", name="pk_search_docs"),
    )
    op.create_index("ix_search_docs_room_id_pos", "search_docs", ["room_id", "pos"])
    _backfill_search_docs()


def _backfill_search_docs(batch: int = 1000) -> None:
    """Index the text (``title``, ``body``) of the non-state events stored before this revision."""
    bind = op.get_bind()
    select = sa.text("SELECT pos, room_id, event_id, json FROM events WHERE state_key IS NULL AND pos > :after "
                     "ORDER BY pos LIMIT :n")
    insert = sa.text("INSERT INTO search_docs (pos, room_id, event_id, body) VALUES (:pos, :room_id, :event_id, :body)")
    after = 0
    while True:
        rows = bind.execute(select, {"after": after, "n": batch}).fetchall()
        docs = []
        for pos, room_id, event_id, raw in rows:
            content = json.loads(bytes(raw)).get("content")
            texts = [content.get(k) for k in ("title", "body")] if isinstance(content, dict) else []
            body = "\n".join(t for t in texts if isinstance(t, str) and t)
            if body:
                docs.append({"pos": pos, "room_id": room_id, "event_id": event_id, "body": body})
        if docs:
            bind.execute(insert, docs)
        if len(rows) < batch:
            return
        after = rows[-1][0]


def downgrade() -> None:
    """Drop the social tables and the full-text index built over ``search_docs``."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS search_docs_ai")
        op.execute("DROP TRIGGER IF EXISTS search_docs_ad")
        op.execute("DROP TABLE IF EXISTS search_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_search_docs_tsv")
    op.drop_index("ix_search_docs_room_id_pos", table_name="search_docs")
    op.drop_table("search_docs")
    op.drop_table("notifications")
    op.drop_table("social_tag_approvals")
    op.drop_index("ix_social_tags_ts", table_name="social_tags")
    op.drop_table("social_tags")
