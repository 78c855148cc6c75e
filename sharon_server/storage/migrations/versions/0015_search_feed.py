"""The search corpus is written after commit: the mark of how far it is derived.

- ``search_feed``: one row, ``derived_to``: every event at or below it has its
  ``search_docs`` row (or needs none). Search documents are no longer written in the event's
  own transaction but in bulk after it (decision 0018); start-up re-derives those of the
  events above the mark. An existing database starts at its newest event: until now every
  document was written with its event.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create search_feed, marked at the newest event."""
    op.create_table(
        "search_feed",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("derived_to", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_search_feed"),
    )
    op.execute("INSERT INTO search_feed (id, derived_to) SELECT 1, coalesce(max(pos), 0) FROM events")


def downgrade() -> None:
    """Drop search_feed (documents above its mark that were not yet written stay missing
    until an upgrade re-derives them)."""
    op.drop_table("search_feed")
