"""Opening the database: engines and connection settings, migrations, and the stores.

``open_database(url)`` accepts ``sqlite+aiosqlite:///path`` (the default backend) or
``postgresql+asyncpg://...``; bare ``sqlite://`` and ``postgresql://`` get those drivers.

SQLite: WAL, ``synchronous=FULL`` (an acknowledged commit survives SIGKILL and power loss),
foreign keys on. There is ONE writer connection (SQLite allows one writer at a time, so
writers queue in the pool instead of spinning on SQLITE_BUSY); it begins every transaction
with ``BEGIN IMMEDIATE``, so transactions, DDL included, are real and never need a lock
upgrade. Reads use a separate small pool of read-only connections in autocommit: under WAL
they read the last committed snapshot without waiting for the writer.

PostgreSQL: one asyncpg pool; reads run on it in autocommit (no BEGIN/ROLLBACK round trips).
``schema=`` confines everything (the alembic_version table too) to one schema, created if
needed: tests use a fresh schema each.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import AsyncAdaptedQueuePool, StaticPool

from sharon_server.storage import migrations
from sharon_server.storage._async import AsyncEngine, create_async_engine
from sharon_server.storage._sql import Engines
from sharon_server.storage.accounts import AccountStore
from sharon_server.storage.events import EventStore

__all__ = ["Database", "open_database", "alembic_config", "head_revision", "shipped_head"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_READERS = 4
PG_POOL_SIZE = 10
PG_MAX_OVERFLOW = 10
_PG_MIGRATION_LOCK = 0x5348_4152  # pg_advisory_xact_lock key: one migrator at a time
_SCHEMA_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


_REVISION_RE = re.compile(r'^(down_revision|revision)\s*=\s*["\']?([^"\'\s]+)["\']?', re.MULTILINE)


def shipped_head() -> str:
    """The newest bundled revision, read from the migration files without importing Alembic.

    Start-up compares it with the database's ``alembic_version`` and loads Alembic only when
    a migration is due (Alembic and its templates cost ~14 MiB and 0.1-0.25 s to import).
    """
    revisions, parents = set(), set()
    for path in (Path(migrations.__file__).resolve().parent / "versions").glob("*.py"):
        for key, value in _REVISION_RE.findall(path.read_text("utf-8")):
            (revisions if key == "revision" else parents).add(value)
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations must form one chain; heads found: {sorted(heads)}")
    return heads.pop()


def alembic_config() -> Any:
    """An Alembic config for the bundled migrations, built in code (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).resolve().parent))
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code (as Alembic computes it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


class Database:
    """An open database: its engines, its stores, and its migrations."""

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine, dialect: str) -> None:
        self.engine = engine
        """The engine for transactions (on SQLite: the single writer connection)."""
        self.read_engine = read_engine
        """The engine for single-statement reads (autocommit; on SQLite: read-only pool)."""
        self.dialect = dialect
        """``"sqlite"`` or ``"postgresql"``."""
        engines = Engines(write=engine, read=read_engine, dialect=dialect)
        self.accounts = AccountStore(engines)
        self.events = EventStore(engines)

    def __repr__(self) -> str:
        return f"<Database {self.engine.url.render_as_string(hide_password=True)}>"

    async def migrate(self) -> None:
        """Upgrade the schema to the newest revision; does nothing if already there."""
        if await self._stored_revision() == shipped_head():
            return
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            await conn.run_sync(_upgrade_to_head)

    async def _stored_revision(self) -> Optional[str]:
        try:
            async with self.read_engine.connect() as conn:
                rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        except Exception:  # noqa: BLE001 - no table yet (a new database)
            return None
        return rows[0][0] if len(rows) == 1 else None

    async def current_revision(self) -> Optional[str]:
        """The schema revision the database is at (None before any migration)."""
        from alembic.runtime.migration import MigrationContext

        async with self.read_engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())

    async def close(self) -> None:
        """Close every connection (SQLite checkpoints its WAL when the last one closes)."""
        if self.read_engine.sync_engine.pool is not self.engine.sync_engine.pool:
            await self.read_engine.dispose()
        await self.engine.dispose()


async def open_database(url: str, *, schema: Optional[str] = None) -> Database:
    """Open (creating if needed) the database at ``url`` and migrate it to the newest schema.

    ``schema`` (PostgreSQL only) puts every table in that schema, created if missing.
    """
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise ValueError("schema= is only supported on PostgreSQL")
        db = _open_sqlite(u)
    elif backend == "postgresql":
        db = await _open_postgresql(u, schema)
    else:
        raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql)")
    try:
        await db.migrate()
    except BaseException:
        await db.close()
        raise
    return db


def _upgrade_to_head(sync_conn: Any) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


# Every engine is made with ``hide_parameters=True``: a failed statement's exception (logged
# with its traceback by ``ws.handler_failed`` and the features' ``log.failure`` calls) must
# not carry the bound values, which include message bodies, held posts, report notes and
# pseudonyms (the privacy rule: no bodies or identity in log lines).


def _open_sqlite(u: URL) -> Database:
    if u.drivername == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername != "sqlite+aiosqlite":
        raise ValueError(f"SQLite needs the aiosqlite driver, not {u.drivername!r}")
    path = u.database or ""
    if path in ("", ":memory:") or u.query.get("mode") == "memory":
        # One shared connection: a memory database exists only inside its connection.
        engine = create_async_engine(u, poolclass=StaticPool, hide_parameters=True)
        _listen_sqlite(engine, writer=True)
        return Database(engine, engine, "sqlite")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # No rollback when a connection goes back to the pool: every use of the writer ends its
    # own transaction (engine.begin() commits or rolls back; a Connection rolls back what it
    # autobegan when it closes; the group commit's one-hop path always commits or rolls
    # back), and the reset cost a thread hop on the reactor per group commit (decision 0018).
    writer = create_async_engine(u, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0, pool_timeout=60,
                                 pool_reset_on_return=None, hide_parameters=True)
    _listen_sqlite(writer, writer=True)
    reader = create_async_engine(
        u,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=SQLITE_READERS,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,  # autocommit + query_only: nothing to roll back
        hide_parameters=True,
    )
    _listen_sqlite(reader, writer=False)
    return Database(writer, reader, "sqlite")


def _listen_sqlite(engine: AsyncEngine, *, writer: bool) -> None:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if writer:
            # Take transaction control from the sqlite3 module: "begin" below emits BEGIN.
            dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        if not writer:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    if writer:
        event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))


async def _open_postgresql(u: URL, schema: Optional[str]) -> Database:
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+asyncpg")
    elif u.drivername != "postgresql+asyncpg":
        raise ValueError(f"PostgreSQL needs the asyncpg driver, not {u.drivername!r}")
    connect_args: dict[str, Any] = {"timeout": 10}
    quoted = None
    if schema is not None:
        if not _SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"bad schema name {schema!r}")
        quoted = '"' + schema + '"'
        connect_args["server_settings"] = {"search_path": quoted}
    engine = create_async_engine(
        u, pool_size=PG_POOL_SIZE, max_overflow=PG_MAX_OVERFLOW, pool_recycle=3600, connect_args=connect_args,
        hide_parameters=True,
    )
    try:
        if quoted is not None:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
    except BaseException:
        await engine.dispose()
        raise
    return Database(engine, engine.execution_options(isolation_level="AUTOCOMMIT"), "postgresql")
