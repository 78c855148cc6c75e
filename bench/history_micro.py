"""Micro-benchmark (``python -m bench.history_micro``; decision 0014): one history page of
100 events read through the async engine (one hop per cursor step) against one call on the
reader connection's aiosqlite thread (``EventStore._fetch``). Interleaved, medians of
process CPU and wall time per page. ``EVENTS=20000 ROUNDS=30``."""
import asyncio
import json
import os
import statistics
import tempfile
import time

from sharon_server.storage.database import open_database
from sharon_server.storage.events import _HISTORY_B
from sharon_server.storage.rows import EventRow

EVENTS = int(os.environ.get("EVENTS", "20000"))
ROUNDS = int(os.environ.get("ROUNDS", "30"))
PAGES = 20


async def main() -> None:
    tmp = tempfile.mkdtemp()
    db = await open_database(f"sqlite+aiosqlite:///{tmp}/h.db")
    raw = json.dumps({"type": "m.room.message", "content": {"body": "hello"}, "x": "y" * 300}).encode()
    await db.events.bulk_insert_events(
        [EventRow(p, f"$e{p}", "!r:x", "m.room.message", None, "@a:x", 1, raw) for p in range(1, EVENTS + 1)])
    store = db.events

    async def old(hi: int) -> list:
        async with db.read_engine.connect() as conn:
            return [EventRow(*r) for r in await conn.execute(_HISTORY_B, {"room_id": "!r:x", "hi": hi, "limit": 100})]

    async def new(hi: int) -> list:
        return [EventRow(*r) for r in await store._fetch(_HISTORY_B, {"room_id": "!r:x", "hi": hi, "limit": 100})]

    res = {"async engine": ([], []), "one hop": ([], [])}
    for r in range(ROUNDS):
        for name, fn in (("async engine", old), ("one hop", new)):
            c0, w0 = time.process_time(), time.perf_counter()
            for i in range(PAGES):
                rows = await fn(EVENTS - 137 * i)
                assert len(rows) == 100
            res[name][0].append((time.process_time() - c0) / PAGES * 1e6)
            res[name][1].append((time.perf_counter() - w0) / PAGES * 1e6)
    base = statistics.median(res["async engine"][0])
    for name, (cpu, wall) in res.items():
        print(f"{name:13s} cpu/page {statistics.median(cpu):6.0f} us  wall/page {statistics.median(wall):6.0f} us  "
              f"cpu ratio {statistics.median(cpu) / base:.2f}")
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
