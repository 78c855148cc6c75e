"""Tables of the services feature: server administrators."""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["server_admins"]

server_admins = sa.Table(
    "server_admins",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("granted_ts", sa.BigInteger, nullable=False),
    sa.Column("granted_by", sa.Text, nullable=False),
)
"""Accounts that may create services and change their settings (granted from the shell)."""
