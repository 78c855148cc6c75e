"""Small private helpers shared by the stores: dialect inserts and row-to-parameter lists."""

from __future__ import annotations

import sqlite3
from operator import attrgetter
from typing import Any, Callable, Dict, Iterable, List, Sequence, TypeVar

import attr
import sqlalchemy as sa
from sqlalchemy.util import greenlet_spawn

from sharon_server.storage._async import AsyncEngine

__all__ = ["insert_for", "to_params", "on_sqlite_thread", "immediate_transaction", "SqliteTxn", "BIGINT_MIN",
           "BIGINT_MAX", "Engines"]

_T = TypeVar("_T")

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


async def on_sqlite_thread(engine: AsyncEngine, fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn(*args, dbapi_conn)`` ON the aiosqlite thread of one of ``engine``'s
    connections, in one hop, holding that connection meanwhile (on the writer pool: the
    single writer, so no other write runs). ``fn`` gets the plain ``sqlite3`` connection,
    which is in autocommit mode: it begins and ends any transaction itself.

    Through the async engine every statement costs several thread hops (cursor, execute,
    fetch, close; BEGIN and COMMIT too), each a wake-up of the reactor thread as well
    (decision 0014). SQLite only.
    """
    raw = await engine.raw_connection()  # the pool's checkout, without a Connection around it
    try:
        aconn = raw.driver_connection
        return await aconn._execute(fn, *args, aconn._conn)
    finally:
        await greenlet_spawn(raw.close)  # back to the pool (closing it if it was invalidated)


class SqliteTxn:
    """The statements of one ``immediate_transaction`` on a plain ``sqlite3`` connection;
    remembers the last statement, which an error names (never its parameters)."""

    __slots__ = ("conn", "statement")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statement = ""

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.statement = sql
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        self.statement = sql
        return self.conn.executemany(sql, rows)


def immediate_transaction(dbapi_conn: sqlite3.Connection, body: Callable[[SqliteTxn], _T],
                          dialect: Any = None) -> _T:
    """``body(txn)`` between ``BEGIN IMMEDIATE`` and ``COMMIT`` on a plain ``sqlite3``
    connection in autocommit mode (on its own thread: ``on_sqlite_thread``); ``ROLLBACK`` on
    any error. A ``sqlite3`` error is raised as SQLAlchemy's class for it (``IntegrityError``
    for a duplicate), as the async engine would, with no bound values in its text."""
    txn = SqliteTxn(dbapi_conn)
    try:
        txn.execute("BEGIN IMMEDIATE")
        try:
            result = body(txn)
            txn.execute("COMMIT")
        except BaseException:
            if dbapi_conn.in_transaction:
                dbapi_conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(txn.statement, None, exc, sqlite3.Error, hide_parameters=True,
                                         dialect=dialect) from exc
    return result
