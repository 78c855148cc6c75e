"""Tables of moderation (#6): held posts, marks on events, pre-moderation counts,
sanctions and appeals, on the shared metadata (migration 0013)."""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["mod_held", "mod_marks", "mod_premod", "mod_sanctions", "mod_appeals"]

mod_held = sa.Table(
    "mod_held",
    metadata,
    sa.Column("held_id", sa.Text, primary_key=True),
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
    sa.UniqueConstraint("author", "txn_id"),
    sa.Index("ix_mod_held_service_id_status", "service_id", "status"),
)
"""A post held for review instead of committed: its canonical content as JSON and the
outcome. ``status`` is held | approved | rejected; (author, txn_id) makes retries idempotent."""

mod_marks = sa.Table(
    "mod_marks",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("hidden", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("redacted", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("cw", sa.Text, nullable=True),
    sa.Column("rule", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("by_user", sa.Text, nullable=False),
    sa.Column("updated_ts", sa.BigInteger, nullable=False),
)
"""What moderators did to an event (hidden, redacted, content warning); loaded into memory
so the per-viewer history filter needs no I/O."""

mod_premod = sa.Table(
    "mod_premod",
    metadata,
    sa.Column("service_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("remaining", sa.Integer, nullable=True),
    sa.Column("approved", sa.Integer, nullable=False),
)
"""Per member and service: posts still to hold (set by staff; NULL: the service's mode
decides) and posts approved so far (counts towards ``premod_first_posts``)."""

mod_sanctions = sa.Table(
    "mod_sanctions",
    metadata,
    sa.Column("sanction_id", sa.Text, primary_key=True),
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
    sa.Index("ix_mod_sanctions_user_id", "user_id"),
    sa.Index("ix_mod_sanctions_service_id", "service_id"),
)
"""Warnings, mutes, suspensions and bans (service_id NULL: server-wide, by a server admin)."""

mod_appeals = sa.Table(
    "mod_appeals",
    metadata,
    sa.Column("appeal_id", sa.Text, primary_key=True),
    sa.Column("sanction_id", sa.Text, nullable=False),
    sa.Column("service_id", sa.Text, nullable=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("decided_ts", sa.BigInteger, nullable=True),
    sa.Column("decision_reason", sa.Text, nullable=True),
    sa.UniqueConstraint("sanction_id"),
)
"""One appeal per sanction (the unique constraint is the rule), decided by another moderator."""
