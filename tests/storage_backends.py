"""The ``backend`` fixture: each storage contract test runs on SQLite and on PostgreSQL.

SQLite is a real file under ``tmp_path``. PostgreSQL is the server at
``SHARON_TEST_POSTGRES_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``);
each test gets a fresh schema, dropped afterwards. An unreachable PostgreSQL skips those
tests with the URL in the reason, unless ``SHARON_REQUIRE_POSTGRES=1`` (CI): then they fail.

Tests are plain sync functions; ``Backend.run`` drives a coroutine on the test's own
asyncio loop (the storage layer does not depend on Twisted).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any, Coroutine, Iterator, List, Optional, TypeVar

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from sharon_server.storage.database import Database, open_database

__all__ = ["Backend", "backend", "sqlite_backend", "run", "POSTGRES_URL"]

T = TypeVar("T")

POSTGRES_URL = os.environ.get("SHARON_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
_REQUIRE_POSTGRES = os.environ.get("SHARON_REQUIRE_POSTGRES") == "1"
_pg_unreachable: Optional[str] = None  # the reason, once a probe failed
_pg_probed = False


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


class Backend:
    """One backend for one test: opens databases on it, all on the test's own loop."""

    def __init__(self, name: str, url: str, schema: Optional[str]) -> None:
        self.name = name
        self.url = url
        self.schema = schema
        self.loop = asyncio.new_event_loop()
        self._opened: List[Database] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this test's loop (databases stay bound to it)."""
        return self.loop.run_until_complete(coro)

    async def open(self) -> Database:
        """Open (and migrate) the database; closed automatically after the test."""
        db = await open_database(self.url, schema=self.schema)
        self._opened.append(db)
        return db

    def close(self) -> None:
        """Close what the test opened, drop the PostgreSQL schema, close the loop."""
        try:
            for db in self._opened:
                self.run(db.close())
            if self.schema is not None:
                self.run(_drop_schema(self.url, self.schema))
        finally:
            self.loop.close()


async def _drop_schema(url: str, schema: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await engine.dispose()


async def _probe(url: str) -> None:
    engine = create_async_engine(url, connect_args={"timeout": 3})
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    finally:
        await engine.dispose()


def _require_postgres() -> None:
    """Skip (or, with SHARON_REQUIRE_POSTGRES=1, fail) when PostgreSQL is unreachable."""
    global _pg_probed, _pg_unreachable
    if not _pg_probed:
        _pg_probed = True
        try:
            run(_probe(POSTGRES_URL))
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            _pg_unreachable = f"PostgreSQL at {POSTGRES_URL} is unreachable: {type(exc).__name__}: {exc}"
    if _pg_unreachable is not None:
        if _REQUIRE_POSTGRES:
            pytest.fail(_pg_unreachable + " (SHARON_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(_pg_unreachable + " (set SHARON_TEST_POSTGRES_URL)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty database location on each backend (SQLite file / PostgreSQL schema)."""
    if request.param == "sqlite":
        b = _sqlite(tmp_path)
    else:
        _require_postgres()
        b = Backend("postgresql", POSTGRES_URL, "t_" + uuid.uuid4().hex[:16])
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[Backend]:
    """A fresh SQLite database file, for tests of SQLite-only behaviour."""
    b = _sqlite(tmp_path)
    try:
        yield b
    finally:
        b.close()


def _sqlite(tmp_path: Path) -> Backend:
    # A subdirectory that does not exist yet: open_database must create it.
    return Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'data' / 'sharon.db'}", None)
