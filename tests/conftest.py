"""Shared fixtures: one asyncio loop with Twisted's reactor, and the real server as a process.

The ``server`` fixture starts ``python -m sharon_server`` on 127.0.0.1 with a fresh data
directory and a free port, and waits for its ``server.listening`` log line (no sleeps). Its
log lines are kept, so tests can assert what the server logged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Coroutine, Dict, List, Optional, TypeVar

import pytest

from clients.runtime import install_reactor, run as _run

T = TypeVar("T")

install_reactor()

# Fast password hashing for tests only; production keeps the memory-hard defaults.
TEST_ENV = {
    "SHARON_PASSWORD_TIME_COST": "1",
    "SHARON_PASSWORD_MEMORY_KIB": "8192",
    "SHARON_PASSWORD_PARALLELISM": "1",
    "SHARON_LOG_FORMAT": "json",
}


class ServerProcess:
    """A real server process on 127.0.0.1; ``restart()`` keeps the data directory."""

    def __init__(self, data_dir: Path, extra_env: Optional[Dict[str, str]] = None,
                 args: Optional[List[str]] = None) -> None:
        self.data_dir = data_dir
        self.extra_env = extra_env or {}
        self.args = args or []
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.logs: List[Dict[str, Any]] = []
        self.raw_lines: List[str] = []
        self._reader: Optional[threading.Thread] = None

    @property
    def ws_url(self) -> str:
        """The WebSocket URL clients connect to."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        """The base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "ServerProcess":
        """Start the process and block until it logs that it is listening."""
        env = dict(os.environ)
        env.update(TEST_ENV)
        env.update(self.extra_env)
        listen = f"127.0.0.1:{self.port}" if self.port else "127.0.0.1:0"
        cmd = [sys.executable, "-m", "sharon_server", "--data-dir", str(self.data_dir), "--listen", listen]
        self.proc = subprocess.Popen(cmd + self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, text=True, bufsize=1)
        ready = threading.Event()
        failed: List[str] = []

        def read(proc: subprocess.Popen) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.raw_lines.append(line)
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                self.logs.append(record)
                if record.get("event") == "server.listening":
                    self.port = int(record["port"])
                    ready.set()
                elif record.get("event") == "server.start_failed":
                    failed.append(line)
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, args=(self.proc,), daemon=True)
        self._reader.start()
        if not ready.wait(timeout_s) or failed or self.proc.poll() is not None:
            output = "".join(self.raw_lines[-50:])
            self.stop()
            raise RuntimeError(f"server did not start:\n{output}")
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crash or power cut of the process."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self._reader:
            self._reader.join(10)

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop in 10 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._reader:
            self._reader.join(10)

    def restart(self, *, hard: bool = False) -> "ServerProcess":
        """Stop (SIGKILL when ``hard``) and start again on the same port and data directory."""
        self.kill() if hard else self.stop()
        return self.start()

    def health(self) -> Dict[str, Any]:
        """GET /health as a dict."""
        import urllib.request

        with urllib.request.urlopen(self.http_url + "/health", timeout=10) as resp:
            return json.loads(resp.read())


@pytest.fixture(scope="session")
def loop_and_reactor():
    """The one asyncio loop (with Twisted's reactor on it) all client code runs on."""
    return install_reactor()


@pytest.fixture
def run(loop_and_reactor):
    """``run(coro)``: run a coroutine on the shared loop and return its result (30 s bound)."""

    def runner(coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return _run(coro, timeout_s)

    return runner


def module_server(label: str, extra_env: Optional[Dict[str, str]] = None) -> Any:
    """A module-scoped fixture: one real server shared by every test of a test module (each
    test makes its own service and people). Use as ``tserver = module_server("triage")``;
    the fixture's name is the name it is assigned to."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory):
        proc = ServerProcess(tmp_path_factory.mktemp(label) / "sharon-data", extra_env).start()
        yield proc
        proc.stop()

    return fixture


@pytest.fixture
def server(tmp_path):
    """A fresh real server on a free port with its own SQLite data directory."""
    proc = ServerProcess(tmp_path / "sharon-data").start()
    yield proc
    proc.stop()


@pytest.fixture
def server_factory(tmp_path):
    """Start servers with extra environment or arguments: ``server_factory(env=..., args=...)``."""
    started: List[ServerProcess] = []

    def make(env: Optional[Dict[str, str]] = None, args: Optional[List[str]] = None,
             name: str = "sharon-data") -> ServerProcess:
        proc = ServerProcess(tmp_path / name, env, args).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


async def _postgres_admin(sql: str) -> None:
    """Run one statement on the test PostgreSQL in autocommit (CREATE/DROP DATABASE)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.storage_backends import POSTGRES_URL

    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


@pytest.fixture
def pg_server(server_factory):
    """A real server on a fresh PostgreSQL database, dropped afterwards.

    Skips when PostgreSQL is unreachable, or fails with SHARON_REQUIRE_POSTGRES=1 (CI).
    """
    import asyncio
    import uuid

    from sqlalchemy.engine import make_url

    from tests.storage_backends import POSTGRES_URL, _require_postgres

    _require_postgres()
    name = "sharon_t_" + uuid.uuid4().hex[:12]
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    proc = server_factory(args=["--database-url", url], name="pg-data")
    try:
        yield proc
    finally:
        proc.stop()
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
