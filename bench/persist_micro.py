"""Micro-benchmark (``python -m bench.persist_micro``; decision 0014): the group-commit
transaction through the async engine, one awaited statement at a time (``_run_steps``, the
PostgreSQL path, used on SQLite before) against the whole transaction in one call on the
aiosqlite thread (``_run_on_sqlite_thread``, SQLite now). Same rows (events, txn IDs, the
room's extremity), SQLite ``synchronous=FULL``, the variants interleaved in one process.

Prints the process CPU (both threads) and wall time per batch and per event, medians.
``BATCHES=1,16,40 ROUNDS=40`` set the batch sizes and rounds."""
import asyncio
import json
import os
import statistics
import tempfile
import time

from sharon_server.storage.database import open_database
from sharon_server.storage.events import (
    _INSERT_EVENTS, _INSERT_ROOMS, _INSERT_TXNS, _SET_EXTREMITY, _EVENT_COLS, _ROOM_COLS, _TXN_COLS,
)
from sharon_server.storage._sql import to_params
from sharon_server.storage.rows import EventRow, RoomRow, TxnRow

BATCHES = [int(b) for b in os.environ.get("BATCHES", "1,16,40").split(",")]
ROUNDS = int(os.environ.get("ROUNDS", "40"))
PER_ROUND = 5


def steps_for(pos: int, n: int, first: bool) -> list:
    evs, txns = [], []
    for p in range(pos, pos + n):
        raw = json.dumps({"type": "m.room.message", "content": {"body": f"hello {p}"}, "x": "y" * 300}).encode()
        evs.append(EventRow(p, f"$e{p}", f"!r{p % 10}:x", "m.room.message", None, "@a:x", 1, raw))
        txns.append(TxnRow("@a:x", f"t{p}", f"$e{p}", p))
    steps = []
    if first:
        steps.append((_INSERT_ROOMS, to_params(
            [RoomRow(f"!r{i}:x", "chat", "@a:x", False, 1, "$x", 0) for i in range(10)], _ROOM_COLS)))
    steps.append((_INSERT_EVENTS, to_params(evs, _EVENT_COLS)))
    rooms = {e.room_id: e for e in evs}
    steps.append((_SET_EXTREMITY, [{"b_room_id": r, "b_last_event_id": e.event_id, "b_depth": e.pos}
                                   for r, e in rooms.items()]))
    steps.append((_INSERT_TXNS, to_params(txns, _TXN_COLS)))
    return steps


async def main() -> None:
    tmp = tempfile.mkdtemp()
    kinds = ["per_statement", "one_hop"]
    dbs = {k: await open_database(f"sqlite+aiosqlite:///{tmp}/{k}.db") for k in kinds}
    pos = {k: 1 for k in kinds}
    for k in kinds:
        await dbs[k].events._run_steps(steps_for(pos[k], 1, True))
        pos[k] += 1
    for batch in BATCHES:
        res = {k: ([], []) for k in kinds}
        for _ in range(ROUNDS):
            for k in kinds:
                store = dbs[k].events
                run = store._run_steps if k == "per_statement" else store._run_on_sqlite_thread
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(PER_ROUND):
                    await run(steps_for(pos[k], batch, False))
                    pos[k] += batch
                c1, w1 = time.process_time(), time.perf_counter()
                res[k][0].append((c1 - c0) / PER_ROUND * 1e6)
                res[k][1].append((w1 - w0) / PER_ROUND * 1e6)
        base = statistics.median(res["per_statement"][0])
        for k in kinds:
            cpu, wall = statistics.median(res[k][0]), statistics.median(res[k][1])
            print(f"batch {batch:3d} {k:14s} cpu/batch {cpu:7.0f} us ({cpu / batch:6.1f}/event)  "
                  f"wall/batch {wall:7.0f} us  cpu ratio {cpu / base:.2f}")
    for db in dbs.values():
        await db.close()


if __name__ == "__main__":
    asyncio.run(main())
