"""The SQLite full-text index is fed in bulk after commit (no per-row trigger): a search
still sees every acknowledged post, and nothing committed is lost to a crash before the feed.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.helpers import user

pytestmark = pytest.mark.integration


def test_search_sees_posts_at_once_and_after_a_crash(server, run):
    word = "zq" + uuid.uuid4().hex[:8]

    async def first():
        alice = await user(server, "alice")
        room = (await alice.create_room("chat", "Evening", public=True))["room_id"]
        await alice.send(room, f"one {word} first")
        # searched straight after the acknowledgement: the search feeds the index itself
        hits = (await alice.request("search", query=word))["results"]
        assert [h["event"]["content"]["body"] for h in hits] == [f"one {word} first"]
        # a burst, searched at once, then the server is killed before the timed feed is due
        await asyncio.gather(*(alice.send(room, f"burst {word} {i}") for i in range(30)))
        assert len((await alice.request("search", query=word, limit=100))["results"]) == 31
        await alice.send(room, f"last {word} before the crash")
        await alice.close()
        return alice.token

    token = run(first())
    server.restart(hard=True)

    async def second():
        from clients.client import SharonClient

        alice = await SharonClient.connect(server.ws_url)
        await alice.auth(token)
        hits = (await alice.request("search", query=word, limit=100))["results"]
        assert len(hits) == 32
        assert hits[0]["event"]["content"]["body"] == f"last {word} before the crash"
        await alice.close()

    run(second())


def test_committed_but_unindexed_documents_are_indexed_at_start_up(tmp_path):
    """A crash between an event's commit and the index feed: start-up catches up from the
    index's high-water mark; deleting a document the index never saw leaves it intact;
    an old database's per-row trigger is dropped."""
    import sqlalchemy as sa

    from sharon_server.storage.database import open_database
    from sharon_server.storage.social import SocialStore, ensure_search_index, feed_search_index

    insert = sa.text("INSERT INTO search_docs (pos, room_id, event_id, body) VALUES (:p, '!r:x', :e, :b)")
    event = sa.text("INSERT INTO events (pos, event_id, room_id, type, state_key, sender, origin_server_ts, json) "
                    "VALUES (:p, :e, '!r:x', 'm.room.message', NULL, '@a:x', 1, '{}')")

    async def rows(db, *docs):
        async with db.engine.begin() as conn:
            for pos, body in docs:
                await conn.execute(event, {"p": pos, "e": f"$e{pos}"})
                await conn.execute(insert, {"p": pos, "e": f"$e{pos}", "b": body})

    async def hits(db, word):
        return [h[0] for h in await SocialStore(db).search([word], ["!r:x"], None, 10)]

    async def go():
        path = tmp_path / "s.db"
        db = await open_database(f"sqlite+aiosqlite:///{path}")
        await db.migrate()
        assert await ensure_search_index(db.engine, db.dialect) is True
        async with db.engine.begin() as conn:  # as an older server left it
            await conn.exec_driver_sql(
                "CREATE TRIGGER search_docs_ai AFTER INSERT ON search_docs BEGIN "
                "INSERT INTO search_fts(rowid, body) VALUES (new.pos, new.body); END")
        await rows(db, (1, "calm breathing"))
        assert await hits(db, "breathing") == [1]
        assert await ensure_search_index(db.engine, db.dialect) is False
        await rows(db, (2, "more breathing"), (3, "walks and breathing"))  # committed, then "crash"
        assert await hits(db, "breathing") == [1]  # the trigger is gone: not indexed yet
        async with db.engine.begin() as conn:  # an unindexed document deleted: no FTS 'delete'
            await conn.exec_driver_sql("DELETE FROM search_docs WHERE pos = 3")
            await conn.exec_driver_sql("DELETE FROM events WHERE pos = 3")
        await db.close()

        db = await open_database(f"sqlite+aiosqlite:///{path}")  # start-up
        assert await ensure_search_index(db.engine, db.dialect) is False
        assert await hits(db, "breathing") == [2, 1]
        async with db.engine.begin() as conn:  # an indexed one deleted leaves the index too
            await conn.exec_driver_sql("DELETE FROM search_docs WHERE pos = 1")
            await conn.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES ('integrity-check')")
        assert await hits(db, "calm") == []
        await rows(db, *((p, f"bulk breathing {p}") for p in range(10, 30)))
        assert await feed_search_index(db.engine, db.dialect, batch=7) == (20, 29)
        assert await feed_search_index(db.engine, db.dialect) == (0, 29)
        assert len(await SocialStore(db).search(["breathing"], ["!r:x"], None, 100)) == 21
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES ('integrity-check')")
        await db.close()

    asyncio.run(go())
