"""Micro-benchmark (``python -m bench.writer_micro``; decision 0018): CPU per event of a group
commit through ``EventStore.persist_batch`` with the writer's plain ``executemany`` path
against SQLAlchemy's execution (the same statements), split into the calling (reactor)
thread and the rest (the SQLite writer thread). Interleaved rounds, medians; SQLite
``synchronous=FULL``. ``BATCH=10 ROUNDS=40``."""
import asyncio
import json
import os
import statistics
import tempfile
import time

import sharon_server.storage.events as E
from sharon_server.storage.database import open_database
from sharon_server.storage.rows import EventRow, TxnRow
from sharon_server.storage.social import SocialStore, ensure_search_index

BATCH = int(os.environ.get("BATCH", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "40"))
PLAN = E._raw_plan


async def _open(kind: str, tmp: str):
    db = await open_database(f"sqlite+aiosqlite:///{tmp}/{kind}.db")
    await db.migrate()
    await ensure_search_index(db.engine, db.dialect)
    return db, SocialStore(db)


async def _batch(db, store, pos: int) -> None:
    evs, docs, txns = [], [], []
    for p in range(pos, pos + BATCH):
        room = f"!r{p % 10}:x"
        ev = {"type": "m.room.message", "room_id": room, "sender": "@a:x", "content": {"body": f"hello {p}"},
              "prev_events": ["$" + "a" * 43], "auth_events": ["$" + "b" * 43], "depth": p, "origin_server_ts": 1}
        evs.append(EventRow(p, f"$e{p}", room, "m.room.message", None, "@a:x", 1, json.dumps(ev).encode()))
        docs.append({"pos": p, "room_id": room, "event_id": f"$e{p}", "body": f"hello {p}"})
        txns.append(TxnRow("@a:x", f"t{p}", f"$e{p}", p))
    await db.events.persist_batch(events=evs, txns=txns, extremities=[(room, f"$e{p}", p)],
                                  extra=[(store.insert_doc, docs)])


async def main() -> None:
    tmp = tempfile.mkdtemp()
    kinds = ["sqlalchemy", "plain"]
    dbs = {k: await _open(k, tmp) for k in kinds}
    pos = {k: 1 for k in kinds}
    res = {k: ([], []) for k in kinds}
    for _ in range(ROUNDS):
        for k in kinds:
            E._raw_plan = (lambda *a: None) if k == "sqlalchemy" else PLAN
            db, store = dbs[k]
            c0, t0 = time.process_time(), time.thread_time()
            for _ in range(10):
                await _batch(db, store, pos[k])
                pos[k] += BATCH
            c1, t1 = time.process_time(), time.thread_time()
            res[k][0].append((c1 - c0) / (10 * BATCH) * 1e6)
            res[k][1].append((t1 - t0) / (10 * BATCH) * 1e6)
    E._raw_plan = PLAN
    print(f"group commits of {BATCH} events, {ROUNDS} rounds, CPU per event (medians):")
    for k in kinds:
        proc, main_ = statistics.median(res[k][0]), statistics.median(res[k][1])
        print(f"  {k:10s} process {proc:6.1f} us   calling thread {main_:6.1f} us   writer thread {proc - main_:6.1f} us")
    for db, _ in dbs.values():
        await db.close()


asyncio.run(main())
