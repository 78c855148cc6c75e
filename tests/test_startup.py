"""Start-up and idle memory (issue #3, decision 0016): what a started server has loaded, and
what an open connection still holds. Deterministic checks (module names, live objects),
never timings: each runs a real server (``ServerApp`` with the production wiring) in a
fresh interpreter, because what a process has imported is only visible from inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

ROOT = Path(__file__).resolve().parent.parent

_SERVE_AND_REPORT = r'''
import asyncio, gc, json, sys
sys.modules["OpenSSL"] = None  # as sharon_server.main does on the server path
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
from twisted.internet import asyncioreactor
asyncioreactor.install(loop)
from twisted.internet import defer, reactor
from twisted.web.http import HTTPChannel

from clients.client import SharonClient
from sharon_server.app import ServerApp
from sharon_server.config import load_config

app = ServerApp(load_config(["--data-dir", sys.argv[1], "--listen", "127.0.0.1:0"]), reactor)
report = {}

async def scenario():
    port = await app.start()
    report["loaded_at_listening"] = {m: m in sys.modules for m in ("sqlalchemy.orm", "alembic")}
    client = await SharonClient.connect(f"ws://127.0.0.1:{port}/ws")
    await client.register(sys.argv[2], "correct horse battery")
    await client.sync()
    room_id = (await client.create_room("chat", "start-up"))["room_id"]
    await client.send(room_id, "still talking after the handshake state went")
    while (await client.next_event(20))["type"] != "m.room.message":
        pass
    (conn,) = app.factory.connections
    gc.collect()
    report["transport_producer"] = type(conn.transport.producer).__name__
    report["http_headers"] = dict(conn.http_headers)
    report["http_request_data"] = conn.http_request_data.decode()
    report["http_channels_alive"] = sum(isinstance(o, HTTPChannel) for o in gc.get_objects())
    await client.close()
    await app.stop()

def done(result):
    print("REPORT " + json.dumps(report), flush=True)
    reactor.stop()
    return result

reactor.callWhenRunning(lambda: defer.Deferred.fromFuture(loop.create_task(scenario())).addBoth(done))
reactor.run()
'''


def _serve_and_report(data_dir: Path, pseudonym: str) -> Dict[str, Any]:
    env = dict(os.environ, SHARON_PASSWORD_TIME_COST="1", SHARON_PASSWORD_MEMORY_KIB="8192",
               SHARON_PASSWORD_PARALLELISM="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _SERVE_AND_REPORT, str(data_dir), pseudonym], cwd=str(ROOT),
                         env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("REPORT ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT "):])


def test_restart_loads_neither_the_orm_nor_alembic_and_connections_drop_handshake_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "sharon-data"
    first = _serve_and_report(data_dir, "early-heron")  # creates and migrates the database
    assert first["loaded_at_listening"]["sqlalchemy.orm"] is False
    again = _serve_and_report(data_dir, "later-heron")  # schema already at head
    assert again["loaded_at_listening"] == {"sqlalchemy.orm": False, "alembic": False}
    for report in (first, again):
        # The connection kept working (a message went round) with the handshake state gone.
        assert report["transport_producer"] == "NoneType"
        assert report["http_headers"] == {} and report["http_request_data"] == ""
        assert report["http_channels_alive"] == 0


@pytest.mark.parametrize("first_lookup", [
    "from sqlalchemy.ext.asyncio import AsyncSession",
    "assert not hasattr(pkg, 'no.such')",  # not a submodule name: the package completes, then answers
])
def test_the_asyncio_package_completes_on_first_lookup_with_the_same_engine_classes(first_lookup: str) -> None:
    code = (
        "import sys\n"
        "from sharon_server.storage import _async\n"
        "assert 'sqlalchemy.orm' not in sys.modules\n"
        "import sqlalchemy.ext.asyncio as pkg\n"
        f"{first_lookup}\n"
        "assert 'sqlalchemy.orm' in sys.modules\n"
        "from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine\n"
        "assert AsyncEngine is _async.AsyncEngine and create_async_engine is _async.create_async_engine\n"
        "assert pkg.AsyncSession is AsyncSession and pkg.engine.AsyncEngine is AsyncEngine\n"
        "try:\n"
        "    pkg.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


_MAIN_AND_REPORT = r'''
import gc, json, sys
import sharon_server.app as A

original = A.ServerApp.start
seen = {}

async def start(self):
    port = await original(self)
    seen.update(enabled_when_listening=gc.isenabled(), frozen=gc.get_freeze_count())
    self._reactor.stop()
    return port

A.ServerApp.start = start
from sharon_server.main import main
code = main(["--data-dir", sys.argv[1], "--listen", "127.0.0.1:0"])
print("REPORT " + json.dumps(dict(seen, code=code, enabled_after=gc.isenabled())), flush=True)
'''


def test_the_server_collects_garbage_once_its_imports_are_frozen(tmp_path: Path) -> None:
    env = dict(os.environ, SHARON_PASSWORD_TIME_COST="1", SHARON_PASSWORD_MEMORY_KIB="8192",
               SHARON_PASSWORD_PARALLELISM="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _MAIN_AND_REPORT, str(tmp_path / "sharon-data")], cwd=str(ROOT),
                         env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("REPORT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["enabled_when_listening"] is True and report["enabled_after"] is True
    assert report["frozen"] > 10_000
