"""Tables of the vault feature, on the shared metadata.

``identity_vault`` holds one encrypted identity record per member and nothing else about
it: no name, no NHS number, no searchable digest. ``key_version`` says which key of the
vault keyring encrypted the row (rotation re-encrypts rows until all are at the current
version). See sharon_server/vault.py and docs/vault.md.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["identity_vault"]

identity_vault = sa.Table(
    "identity_vault",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("updated_ts", sa.BigInteger, nullable=False),
    sa.Index(None, "key_version"),
)
"""AES-256-GCM ciphertext of a padded identity record; AAD binds it to ``user_id``."""
