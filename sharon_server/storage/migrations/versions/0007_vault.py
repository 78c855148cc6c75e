"""Tables of the vault feature.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the vault tables."""
    op.create_table(
        "identity_vault",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_identity_vault"),
    )
    op.create_index("ix_identity_vault_key_version", "identity_vault", ["key_version"])


def downgrade() -> None:
    """Drop the vault tables."""
    op.drop_index("ix_identity_vault_key_version", table_name="identity_vault")
    op.drop_table("identity_vault")
