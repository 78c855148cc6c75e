"""Tables of the media feature.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the media tables."""
    op.create_table(
        "media",
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("uploader", sa.Text, nullable=False),
        sa.Column("mime", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("hash", "room_id", "uploader", name="pk_media"),
    )
    op.create_index("ix_media_room_id_created_ts", "media", ["room_id", "created_ts"])


def downgrade() -> None:
    """Drop the media tables."""
    op.drop_index("ix_media_room_id_created_ts", table_name="media")
    op.drop_table("media")
