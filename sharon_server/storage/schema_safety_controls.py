"""Tables of risk detection and member controls (#6), on the shared metadata.

- ``risk_flags``: one row per event a detector flagged (never for clean events): the score,
  the main category and the hits (terms or pattern names, never the matched text of an
  identifying pattern), for the member card, the triage queue and audits.
- ``member_blocks``: who blocked whom (the blocked member is never told).
- ``member_controls``: one row per member who set mute words, content-warning preferences
  or took a break.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["risk_flags", "member_blocks", "member_controls"]

risk_flags = sa.Table(
    "risk_flags",
    metadata,
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
    sa.PrimaryKeyConstraint("event_id"),
    sa.Index("ix_risk_flags_sender_pos", "sender", "pos"),
    sa.Index("ix_risk_flags_service_pos", "service_id", "pos"),
)
"""Flagged events: ``hits`` is a JSON list of ``{term, category, weight}``."""

member_blocks = sa.Table(
    "member_blocks",
    metadata,
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("blocked_id", sa.Text, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("user_id", "blocked_id"),
    sa.Index("ix_member_blocks_blocked_id", "blocked_id"),
)
"""``user_id`` blocked ``blocked_id``."""

member_controls = sa.Table(
    "member_controls",
    metadata,
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("mute_words", sa.Text, nullable=False),
    sa.Column("cw_prefs", sa.Text, nullable=False),
    sa.Column("break_on", sa.Boolean, nullable=False),
    sa.Column("break_until", sa.BigInteger, nullable=True),
    sa.Column("updated_ts", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("user_id"),
)
"""A member's mute words (JSON list), content-warning preferences (JSON object) and break."""
