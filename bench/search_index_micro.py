"""Micro-benchmark (``python -m bench.search_index_micro``; decision 0011): CPU and wall time per event of the group-commit transaction with the
search corpus row + per-row FTS5 trigger (before), with the corpus row and the bulk feed
(after), and without search (base). Variants interleaved; SQLite synchronous=FULL."""
import asyncio, json, os, sys, tempfile, time, statistics

from sharon_server.storage.database import open_database
from sharon_server.storage.rows import EventRow, TxnRow
from sharon_server.storage.social import SocialStore, ensure_search_index, feed_search_index

BATCH = int(os.environ.get("BATCH", "40")); ROUNDS = int(os.environ.get("ROUNDS", "60"))
BODY = "hello there, how is everyone doing tonight? I had a rough day but the walk helped"

async def variant(kind, tmp):
    db = await open_database(f"sqlite+aiosqlite:///{tmp}/{kind}.db")
    await db.migrate()
    await ensure_search_index(db.engine, db.dialect)
    if kind == "trigger":
        async with db.engine.begin() as c:
            await c.exec_driver_sql("CREATE TRIGGER search_docs_ai AFTER INSERT ON search_docs BEGIN "
                                    "INSERT INTO search_fts(rowid, body) VALUES (new.pos, new.body); END")
    store = SocialStore(db)
    return db, store

async def run_batch(db, store, kind, pos):
    evs = []; docs = []
    for i in range(BATCH):
        p = pos + i
        raw = json.dumps({"type": "m.room.message", "content": {"body": BODY + str(p)}, "x": "y" * 300}).encode()
        evs.append(EventRow(p, f"$e{p}", f"!r{p % 10}:x", "m.room.message", None, "@a:x", 1, raw))
        docs.append({"pos": p, "room_id": f"!r{p % 10}:x", "event_id": f"$e{p}", "body": BODY + str(p)})
    extra = [] if kind == "base" else [(store.insert_doc, docs)]
    await db.events.persist_batch(events=evs, extra=extra)

async def main():
    tmp = tempfile.mkdtemp()
    kinds = ["base", "trigger", "docs", "feed"]  # docs: corpus rows, no index at all
    dbs = {k: await variant(k, tmp) for k in kinds}
    pos = {k: 1 for k in kinds}
    res = {k: ([], []) for k in kinds}
    for r in range(ROUNDS):
        for k in kinds:
            db, store = dbs[k]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(5):
                await run_batch(db, store, k, pos[k]); pos[k] += BATCH
            if k == "feed" and r % 8 == 7:  # one feed per 40 batches (~0.5 s at 3,000 msg/s)
                await feed_search_index(db.engine, db.dialect)
            c1, w1 = time.process_time(), time.perf_counter()
            res[k][0].append((c1 - c0) / (5 * BATCH) * 1e6); res[k][1].append((w1 - w0) / (5 * BATCH) * 1e6)
    for k in kinds:
        print(f"{k:8s} cpu/event median {statistics.median(res[k][0]):6.1f} us (mean {statistics.mean(res[k][0]):6.1f})   wall/event median {statistics.median(res[k][1]):6.1f} us (mean {statistics.mean(res[k][1]):6.1f})")
    b = statistics.median(res["base"][0])
    for k in kinds[1:]:
        print(f"{k}: +{statistics.median(res[k][0]) - b:.1f} us cpu/event over base (means: +{statistics.mean(res[k][0]) - statistics.mean(res['base'][0]):.1f})")
    for k in kinds: await dbs[k][0].close()

asyncio.run(main())
