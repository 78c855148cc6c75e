"""Small private helpers shared by the stores: dialect inserts and row-to-parameter lists."""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, Dict, Iterable, List, Sequence

import attr
import sqlalchemy as sa

from sharon_server.storage._async import AsyncEngine

__all__ = ["insert_for", "to_params", "BIGINT_MIN", "BIGINT_MAX", "Engines"]

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Engines:
    """The engines a store uses: ``write`` for transactions, ``read`` for single reads.

    On SQLite ``read`` is a separate pool of read-only WAL connections, so reads never wait
    behind the single writer connection; on PostgreSQL it is the same pool in autocommit.
    """

    write: AsyncEngine
    read: AsyncEngine
    dialect: str


def insert_for(dialect: str) -> Callable[[sa.Table], Any]:
    """The dialect's ``insert`` construct (it has ``on_conflict_do_update``/``_nothing``)."""
    # Imported here: the PostgreSQL dialect (and asyncpg's) costs ~40 ms of start-up on SQLite.
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    raise ValueError(f"unsupported dialect {dialect!r}")


def to_params(rows: Iterable[Any], names: Sequence[str]) -> List[Dict[str, Any]]:
    """executemany parameters: one dict per attrs row, keyed by ``names`` (the columns)."""
    get = attrgetter(*names)
    names = tuple(names)
    return [dict(zip(names, get(row))) for row in rows]
