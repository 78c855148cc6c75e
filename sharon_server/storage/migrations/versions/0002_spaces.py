"""Tables of the spaces feature.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the spaces tables."""
    op.create_table(
        "server_admins",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("granted_ts", sa.BigInteger, nullable=False),
        sa.Column("granted_by", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_server_admins"),
    )


def downgrade() -> None:
    """Drop the spaces tables."""
    op.drop_table("server_admins")
