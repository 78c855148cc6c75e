"""Tables of the media feature (registered on the shared metadata)."""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["media"]

media = sa.Table(
    "media",
    metadata,
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("uploader", sa.Text, nullable=False),
    sa.Column("mime", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("hash", "room_id", "uploader"),
    sa.Index("ix_media_room_id_created_ts", "room_id", "created_ts"),
)
"""One row per upload of a file (by content hash) to a room by a user. A ``(hash, room_id)``
pair is what lets the room's members fetch the file; the uploader is who may post it there.
The bytes live on disk under ``<data_dir>/media/ab/cd/<hash>``."""
