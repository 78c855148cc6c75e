"""The database schema as SQLAlchemy Core tables (the head of the Alembic migrations).

This module describes the schema the migrations in ``migrations/versions/`` produce; it is
what the stores build their statements from. It never creates tables itself: schema changes
are new migration files, and ``tests/test_storage.py`` checks the two agree.

All timestamps are milliseconds since the Unix epoch (``*_ts``). ``events.pos`` is the
server's global stream position, assigned by the server (never autoincrement). On SQLite it
is declared ``INTEGER PRIMARY KEY`` so it becomes the rowid: the events table is clustered
by ``pos`` and the ``(room_id, pos)`` index points straight at rows.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "metadata",
    "accounts",
    "devices",
    "rooms",
    "events",
    "current_state",
    "txns",
    "POS_TYPE",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

POS_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""BIGINT on PostgreSQL; INTEGER on SQLite so a single-column primary key is the rowid."""

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("pseudonym", sa.Text, nullable=False),
    sa.Column("pseudonym_key", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("pseudonym_skeleton", sa.Text, nullable=True),
    sa.UniqueConstraint("pseudonym_key"),
    sa.Index("ux_accounts_pseudonym_skeleton", "pseudonym_skeleton", unique=True),
)
"""``pseudonym_skeleton`` (migration 0014): the look-alike form (``accounts.pseudonym_skeleton``),
unique so no two accounts have confusable pseudonyms; NULL only for an older account whose
skeleton collided with an earlier one's when the column was backfilled."""

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("user_id", sa.Text, sa.ForeignKey("accounts.user_id", ondelete="CASCADE"), nullable=False),
    sa.Column("device_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("token_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("last_seen_ts", sa.BigInteger, nullable=True),
    sa.PrimaryKeyConstraint("user_id", "device_id"),
    sa.UniqueConstraint("token_hash"),
)

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("creator", sa.Text, nullable=False),
    sa.Column("is_public", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("last_event_id", sa.Text, nullable=False),
    sa.Column("depth", sa.BigInteger, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("pos", POS_TYPE, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("state_key", sa.Text, nullable=True),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("origin_server_ts", sa.BigInteger, nullable=False),
    sa.Column("json", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("event_id"),
    sa.Index("ix_events_room_id_pos", "room_id", "pos"),
)

current_state = sa.Table(
    "current_state",
    metadata,
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("state_key", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("room_id", "type", "state_key"),
    sqlite_with_rowid=False,
)

txns = sa.Table(
    "txns",
    metadata,
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("txn_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("user_id", "txn_id"),
    sa.Index("ix_txns_pos", "pos"),
    sqlite_with_rowid=False,
)

# Feature tables live in their own modules on the same metadata; importing them here makes
# ``metadata`` complete for migrations and for the schema-matches-migrations test.
from sharon_server.storage import (  # noqa: E402,F401
    schema_audit, schema_content, schema_dms, schema_media, schema_social, schema_spaces, schema_vault,
)
from sharon_server.storage import schema_invites  # noqa: E402,F401
from sharon_server.storage import schema_staff  # noqa: E402,F401
from sharon_server.storage import schema_triage  # noqa: E402,F401
from sharon_server.storage import schema_moderation  # noqa: E402,F401
from sharon_server.storage import schema_search_withheld  # noqa: E402,F401

from sharon_server.storage import schema_safety_controls  # noqa: E402,F401
