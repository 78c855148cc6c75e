"""Tables of the audit feature, on the shared metadata.

``audit_log`` is append-only: the server has no UPDATE or DELETE statement for it, and
migration 0008 adds triggers (SQLite and PostgreSQL) that refuse UPDATE, DELETE (and on
PostgreSQL TRUNCATE). The triggers are not part of this metadata (Alembic does not compare
them); see ``docs/audit.md``.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["audit_log", "AUDIT_SEQ_TYPE"]

AUDIT_SEQ_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""BIGINT on PostgreSQL; INTEGER on SQLite so the primary key is the rowid (clustered by seq)."""

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", AUDIT_SEQ_TYPE, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("member", sa.Text, nullable=True),
    sa.Column("service", sa.Text, nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.LargeBinary, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.Index("ix_audit_log_actor_seq", "actor", "seq"),
    sa.Index("ix_audit_log_member_seq", "member", "seq"),
    sa.Index("ix_audit_log_action_seq", "action", "seq"),
    sa.Index("ix_audit_log_ts", "ts"),
)
"""One row per audit entry, hash-chained in ``seq`` order (``rooms/audit_chain.py``).

``details`` is the canonical JSON of the entry's details object; ``prev_hash`` and ``hash``
are the 32-byte SHA-256 chain links. The (column, seq) indexes serve the admin queries,
newest first; ``ts`` serves time ranges.
"""
