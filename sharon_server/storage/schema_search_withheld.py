"""The search documents of hidden events, kept aside so an unhidden post is found again.

A moderator's hide (or redaction) takes an event out of ``search_docs`` (and so out of the
full-text index). The row moves here instead of being thrown away; an unhide moves it back
and re-indexes it (``sharon_server.storage.search_withheld``). A redaction is permanent:
its row is dropped from here too. Created by migration 0014.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import POS_TYPE, metadata

__all__ = ["search_withheld"]

search_withheld = sa.Table(
    "search_withheld",
    metadata,
    sa.Column("pos", POS_TYPE, primary_key=True, autoincrement=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_search_withheld_event_id", "event_id"),
)
"""``search_docs`` rows of events hidden by moderators (same columns; at most one per event)."""
