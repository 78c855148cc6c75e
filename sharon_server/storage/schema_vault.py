"""Tables of the vault feature, on the shared metadata."""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401

from sharon_server.storage.schema import metadata  # noqa: F401

__all__: list = []
