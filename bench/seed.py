"""Fast data generation through the storage layer (benchmarks only; the server is stopped).

* ``seed_accounts``: N accounts, each with one device and a fresh access token, written in
  a few multi-row inserts into the ``accounts`` and ``devices`` tables. All share one
  Argon2id hash (the clients only ever ``auth`` with their token, which is the real
  path: SHA-256 of the token, then the ``devices`` lookup). Registering 10,000 accounts
  over the wire would time the password hasher, not the server.
* ``seed_events``: N message events appended to an existing room with
  ``EventStore.bulk_insert_events``, in chunks with a progress bar. One event is built and
  signed for real with the server's key; the others copy its canonical JSON with a
  different body, and get their own event ID and stream position (their signatures are not
  recomputed: nothing on the history path verifies stored events, and signing a million
  events would take minutes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["seed_accounts", "seed_events", "db_url", "Progress"]

_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def db_url(data_dir: Path) -> str:
    """The server's default SQLite URL for ``data_dir``."""
    return f"sqlite+aiosqlite:///{(data_dir / 'sharon.db').resolve()}"


class Progress:
    """A one-line text progress bar on stderr (a line per 10 % when not a terminal)."""

    def __init__(self, label: str, total: int, unit: str = "") -> None:
        self.label, self.total, self.unit = label, max(1, total), unit
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_decile = -1

    def update(self, done: int) -> None:
        frac = min(1.0, done / self.total)
        rate = done / max(1e-9, time.perf_counter() - self.t0)
        text = (f"    {self.label} [{'#' * int(30 * frac):<30}] {100 * frac:5.1f}% "
                f"{done:,}/{self.total:,} {self.unit} ({rate:,.0f}/s)")
        if self.tty:
            sys.stderr.write("\r" + text)
            if done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif int(frac * 10) != self._last_decile:
            self._last_decile = int(frac * 10)
            print(text, file=sys.stderr, flush=True)


def _random_chars(n: int) -> str:
    return "".join(_BASE32[b % 32] for b in os.urandom(n))


async def _seed_accounts(data_dir: Path, n: int, prefix: str) -> List[Dict[str, str]]:
    from argon2 import PasswordHasher

    from sharon_server.storage.database import open_database
    from sharon_server.storage.schema import accounts, devices

    data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_database(db_url(data_dir))
    try:
        password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("bench-password")
        now = int(time.time() * 1000)
        out: List[Dict[str, str]] = []
        acc_rows: List[Dict[str, Any]] = []
        dev_rows: List[Dict[str, Any]] = []
        for i in range(n):
            user_id = f"@u{_random_chars(12)}:localhost"
            pseudonym = f"{prefix}{i}"
            token = "shr_" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
            acc_rows.append({"user_id": user_id, "pseudonym": pseudonym, "pseudonym_key": pseudonym.casefold(),
                             "password_hash": password_hash, "created_ts": now})
            dev_rows.append({"user_id": user_id, "device_id": f"BENCH{i:05d}", "name": "bench",
                             "token_hash": hashlib.sha256(token.encode()).digest(), "created_ts": now,
                             "last_seen_ts": None})
            out.append({"user_id": user_id, "pseudonym": pseudonym, "token": token})
        async with db.engine.begin() as conn:
            for i in range(0, n, 5000):
                await conn.execute(accounts.insert(), acc_rows[i:i + 5000])
                await conn.execute(devices.insert(), dev_rows[i:i + 5000])
        return out
    finally:
        await db.close()


def seed_accounts(data_dir: Path, n: int, tokens_file: Path, prefix: str = "bench") -> List[Dict[str, str]]:
    """Create ``n`` accounts with one token each; writes ``{"tokens": [...]}`` to ``tokens_file``."""
    accts = asyncio.run(_seed_accounts(data_dir, n, prefix))
    tokens_file.write_text(json.dumps({"tokens": [a["token"] for a in accts]}), encoding="utf-8")
    return accts


async def _seed_events(data_dir: Path, room_id: str, sender: str, count: int,
                       progress: Optional[Progress], chunk: int) -> Dict[str, int]:
    from protocol.canonical_json import encode_canonical
    from protocol.events import sign_event
    from sharon_server.keys import load_or_create_signing_key
    from sharon_server.storage.database import open_database
    from sharon_server.storage.rows import EventRow

    key = load_or_create_signing_key(data_dir / "signing.key")
    db = await open_database(db_url(data_dir))
    try:
        start = await db.events.max_pos() + 1
        last = await db.events.history(room_id, "b", None, 1)
        prev = [last[0].event_id] if last else []
        ts = int(time.time() * 1000)
        placeholder = "@@BODY@@"
        template = {"room_id": room_id, "sender": sender, "type": "m.room.message",
                    "content": {"msgtype": "m.text", "body": placeholder}, "origin_server_ts": ts,
                    "prev_events": prev, "auth_events": prev, "depth": 10}
        raw = encode_canonical(sign_event(template, "localhost", key))
        head, tail = raw.split(placeholder.encode())
        async with db.engine.connect() as conn:  # the one writer connection: a bigger page cache
            await conn.exec_driver_sql("PRAGMA cache_size=-262144")
        room_b = room_id.encode()
        sha = hashlib.sha256
        b64 = base64.urlsafe_b64encode
        done = 0
        while done < count:
            n = min(chunk, count - done)
            rows = []
            for pos in range(start + done, start + done + n):
                event_id = "$" + b64(sha(room_b + pos.to_bytes(8, "big")).digest()).decode()[:43]
                body = b"history message number %d of the benchmark room" % pos
                rows.append(EventRow(pos, event_id, room_id, "m.room.message", None, sender, ts + pos,
                                     head + body + tail))
            await db.events.bulk_insert_events(rows)
            done += n
            if progress:
                progress.update(done)
        return {"first_pos": start, "last_pos": start + count - 1}
    finally:
        await db.close()


def seed_events(data_dir: Path, room_id: str, sender: str, count: int, show_progress: bool = True,
                chunk: int = 20_000) -> Dict[str, int]:
    """Append ``count`` message events to ``room_id``; returns their first and last pos."""
    progress = Progress(f"events for {room_id[:10]}…", count, "events") if show_progress else None
    return asyncio.run(_seed_events(data_dir, room_id, sender, count, progress, chunk))
