"""Tables of the dms feature.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the dms tables."""
    op.create_table(
        "read_markers",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "room_id", name="pk_read_markers"),
    )


def downgrade() -> None:
    """Drop the dms tables."""
    op.drop_table("read_markers")
