"""Tables of the dms feature: per-user read markers, on the shared metadata."""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["read_markers"]

read_markers = sa.Table(
    "read_markers",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("pos", sa.BigInteger, nullable=False),
    sa.Column("updated_ts", sa.BigInteger, nullable=False),
)
"""The stream position up to which a user has read a room (only ever moves forward)."""
