"""Contract tests of the storage layer, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Optional

import attr
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from protocol.errors import PseudonymTaken
from sharon_server.storage import schema
from sharon_server.storage.database import Database, head_revision, open_database
from sharon_server.storage.rows import AccountRow, DeviceRow, EventRow, RoomRow, StateRow, TxnRow

try:  # pytest puts tests/ on sys.path while tests/ is not a package
    from storage_backends import Backend, backend, run, sqlite_backend  # noqa: F401 - fixtures
except ImportError:  # tests/ became a package
    from tests.storage_backends import Backend, backend, run, sqlite_backend  # noqa: F401

ROOM_A = "!" + "A" * 43
ROOM_B = "!" + "B" * 43
ROOM_C = "!" + "C" * 43
ALICE = "@alice:example.org"
BOB = "@bob:example.org"


def ev(pos: int, room: str = ROOM_A, type: str = "m.room.message", state_key: Optional[str] = None) -> EventRow:
    """A stored event at ``pos``; its JSON is a stand-in blob."""
    return EventRow(pos, f"$ev{pos}", room, type, state_key, ALICE, 1_700_000_000_000 + pos, b'{"pos":%d}' % pos)


def room(room_id: str = ROOM_A, last: str = "$ev1", depth: int = 1) -> RoomRow:
    return RoomRow(room_id, "chat", ALICE, True, 1_700_000_000_000, last, depth)


def positions(rows: List[EventRow]) -> List[int]:
    return [r.pos for r in rows]


# --- migrations and opening ---------------------------------------------------------------


def test_migrations_idempotent_and_at_head(backend: Backend) -> None:
    async def go() -> None:
        first = await backend.open()
        assert await first.current_revision() == head_revision()
        assert first.dialect == backend.name
        await first.migrate()  # again, on the same database: a no-op
        second = await backend.open()
        assert await second.current_revision() == head_revision()
        await second.accounts.create_account(ALICE, "Alice", "alice", "h", 1)
        assert (await first.accounts.get(ALICE)) is not None

    backend.run(go())


def test_migrations_match_schema_module(backend: Backend) -> None:
    """The migrations build exactly what schema.py describes (no drift between the two)."""

    async def go() -> None:
        db = await backend.open()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), schema.metadata)
            )
        assert diff == []

    backend.run(go())


def test_reopened_database_keeps_data(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        await db.accounts.create_account(ALICE, "Alice", "alice", "h", 1)
        await db.events.persist_batch([ev(1), ev(2)], [], [room(last="$ev2", depth=2)], [], [])
        await db.close()
        again = await backend.open()
        assert await again.events.max_pos() == 2
        assert positions(await again.events.history(ROOM_A, "f", None, 10)) == [1, 2]
        assert (await again.accounts.get(ALICE)) == AccountRow(ALICE, "Alice", "alice", "h", 1)

    backend.run(go())


def test_row_types_match_columns() -> None:
    for row_type, table in [
        (AccountRow, schema.accounts),
        (DeviceRow, schema.devices),
        (RoomRow, schema.rooms),
        (EventRow, schema.events),
        (StateRow, schema.current_state),
        (TxnRow, schema.txns),
    ]:
        assert [f.name for f in attr.fields(row_type)] == list(table.c.keys())


def test_open_database_rejects_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        run(open_database("mysql+aiomysql://x/y"))
    with pytest.raises(ValueError):
        run(open_database(f"sqlite+aiosqlite:///{tmp_path}/x.db", schema="nope"))


def test_memory_sqlite_works() -> None:
    async def go() -> None:
        db = await open_database("sqlite+aiosqlite://")
        try:
            await db.events.persist_batch([ev(1)], [], [room()], [], [])
            assert positions(await db.events.history(ROOM_A, "b", None, 5)) == [1]
        finally:
            await db.close()

    run(go())


# --- accounts and devices -------------------------------------------------------------------


def test_duplicate_pseudonym_raises_pseudonym_taken(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        row = await db.accounts.create_account(ALICE, "Alice", "alice", "hash-a", 10)
        assert row == AccountRow(ALICE, "Alice", "alice", "hash-a", 10)
        with pytest.raises(PseudonymTaken) as info:
            await db.accounts.create_account(BOB, "ALICE", "alice", "hash-b", 11)
        assert info.value.code == "pseudonym_taken" and info.value.field == "pseudonym"
        assert await db.accounts.get(BOB) is None
        assert await db.accounts.get_by_pseudonym_key("alice") == row
        assert await db.accounts.get(ALICE) == row
        assert await db.accounts.get_by_pseudonym_key("bob") is None
        # A different pseudonym is fine; a duplicate user ID is a plain integrity error.
        await db.accounts.create_account(BOB, "Bob", "bob", "hash-b", 11)
        with pytest.raises(IntegrityError):
            await db.accounts.create_account(BOB, "Robert", "robert", "hash-b", 12)

    backend.run(go())


def test_pseudonyms(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        assert await db.accounts.pseudonyms() == {}
        await db.accounts.create_account(ALICE, "Alice", "alice", "h", 1)
        await db.accounts.create_account(BOB, "Bob", "bob", "h", 2)
        assert await db.accounts.pseudonyms() == {ALICE: "Alice", BOB: "Bob"}
        assert await db.accounts.pseudonyms([BOB, "@ghost:example.org", BOB]) == {BOB: "Bob"}
        assert await db.accounts.pseudonyms([]) == {}
        many = [f"@u{i}:example.org" for i in range(1200)] + [ALICE]
        assert await db.accounts.pseudonyms(many) == {ALICE: "Alice"}

    backend.run(go())


def test_devices_and_token_lookup(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        await db.accounts.create_account(ALICE, "Alice", "alice", "h", 1)
        d1 = await db.accounts.create_device(ALICE, "DEV1", "phone", b"\x01" * 32, 100)
        d2 = await db.accounts.create_device(ALICE, "DEV2", None, b"\x02" * 32, 200)
        assert d1 == DeviceRow(ALICE, "DEV1", "phone", b"\x01" * 32, 100, None)
        assert await db.accounts.device_for_token(b"\x01" * 32) == d1
        assert await db.accounts.device_for_token(b"\x02" * 32) == d2
        assert await db.accounts.device_for_token(b"\x03" * 32) is None
        assert await db.accounts.devices(ALICE) == [d1, d2]
        assert await db.accounts.touch_device(ALICE, "DEV2", 300)
        assert not await db.accounts.touch_device(ALICE, "NOPE", 300)
        assert (await db.accounts.device_for_token(b"\x02" * 32)) == attr.evolve(d2, last_seen_ts=300)
        assert await db.accounts.delete_device(ALICE, "DEV1")
        assert not await db.accounts.delete_device(ALICE, "DEV1")
        assert await db.accounts.device_for_token(b"\x01" * 32) is None
        assert [d.device_id for d in await db.accounts.devices(ALICE)] == ["DEV2"]
        with pytest.raises(IntegrityError):  # the same token twice
            await db.accounts.create_device(ALICE, "DEV3", None, b"\x02" * 32, 400)
        with pytest.raises(IntegrityError):  # no such account (foreign key)
            await db.accounts.create_device(BOB, "DEV1", None, b"\x04" * 32, 400)

    backend.run(go())


# --- events -----------------------------------------------------------------------------------


def test_max_pos(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        assert await db.events.max_pos() == 0
        await db.events.persist_batch([ev(3), ev(7, ROOM_B)], [], [room(), room(ROOM_B)], [], [])
        assert await db.events.max_pos() == 7

    backend.run(go())


def test_history_pages_both_directions_with_max_pos(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        # 25 events in A interleaved with 25 in B: A has the odd positions 1..49.
        batch = [ev(p, ROOM_A if p % 2 else ROOM_B) for p in range(1, 51)]
        await db.events.persist_batch(batch, [], [room(), room(ROOM_B)], [], [])
        odd = list(range(1, 51, 2))

        pages, frm = [], None
        while True:
            page = await db.events.history(ROOM_A, "b", frm, 10)
            if not page:
                break
            pages.append(positions(page))
            frm = page[-1].pos
        assert pages == [odd[::-1][0:10], odd[::-1][10:20], odd[::-1][20:25]]

        pages, frm = [], None
        while True:
            page = await db.events.history(ROOM_A, "f", frm, 10)
            if not page:
                break
            pages.append(positions(page))
            frm = page[-1].pos
        assert pages == [odd[0:10], odd[10:20], odd[20:25]]

        assert positions(await db.events.history(ROOM_A, "b", 21, 3)) == [19, 17, 15]
        assert positions(await db.events.history(ROOM_A, "f", 20, 3)) == [21, 23, 25]
        # max_pos is inclusive and caps both directions.
        assert positions(await db.events.history(ROOM_A, "b", None, 3, max_pos=9)) == [9, 7, 5]
        assert positions(await db.events.history(ROOM_A, "b", 49, 3, max_pos=9)) == [9, 7, 5]
        assert positions(await db.events.history(ROOM_A, "f", 4, 10, max_pos=9)) == [5, 7, 9]
        assert await db.events.history(ROOM_A, "f", 9, 10, max_pos=9) == []
        assert await db.events.history(ROOM_C, "b", None, 10) == []
        assert await db.events.history(ROOM_A, "b", None, 0) == []
        assert (await db.events.history(ROOM_A, "b", None, 1)) == [ev(49)]
        with pytest.raises(ValueError):
            await db.events.history(ROOM_A, "x", None, 1)  # type: ignore[arg-type]

    backend.run(go())


def test_history_matches_a_model(backend: Backend) -> None:
    """Any (direction, from, limit, max_pos) gives what filtering a list would give."""
    rooms = [ROOM_A, ROOM_B, ROOM_C]
    batch = [ev(p, rooms[(p * 7) % 3]) for p in range(1, 121)]

    async def load() -> Database:
        db = await backend.open()
        await db.events.persist_batch(batch, [], [room(r) for r in rooms], [], [])
        return db

    db = backend.run(load())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.sampled_from(rooms),
        st.sampled_from(["b", "f"]),
        st.one_of(st.none(), st.integers(-2, 125)),
        st.integers(1, 30),
        st.one_of(st.none(), st.integers(-2, 125)),
    )
    def check(room_id: str, direction: str, frm: Optional[int], limit: int, max_pos: Optional[int]) -> None:
        got = backend.run(db.events.history(room_id, direction, frm, limit, max_pos))  # type: ignore[arg-type]
        mine = [e for e in batch if e.room_id == room_id and (max_pos is None or e.pos <= max_pos)]
        if direction == "b":
            want = [e for e in reversed(mine) if frm is None or e.pos < frm][:limit]
        else:
            want = [e for e in mine if frm is None or e.pos > frm][:limit]
        assert got == want

    check()


def test_events_since_across_rooms(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        rooms = [ROOM_A, ROOM_B, ROOM_C]
        await db.events.persist_batch([ev(p, rooms[p % 3]) for p in range(1, 31)], [], [room(r) for r in rooms], [], [])
        a_or_b = [p for p in range(1, 31) if p % 3 != 2]  # A: p % 3 == 0, B: 1, C: 2
        assert positions(await db.events.events_since([ROOM_A, ROOM_B], 0, 100)) == a_or_b
        assert positions(await db.events.events_since([ROOM_B, ROOM_A], 10, 5)) == [12, 13, 15, 16, 18]
        assert positions(await db.events.events_since([ROOM_A, ROOM_B], 10, 100, upto_pos=16)) == [12, 13, 15, 16]
        assert positions(await db.events.events_since([ROOM_C], 25, 100)) == [26, 29]
        assert await db.events.events_since([ROOM_C], 29, 100) == []
        assert await db.events.events_since([], 0, 100) == []
        assert await db.events.events_since(["!nope"], 0, 100) == []
        assert (await db.events.events_since([ROOM_A], 0, 1)) == [ev(3, ROOM_A)]

    backend.run(go())


def test_current_state_upsert_replaces(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        create = ev(1, type="m.room.create", state_key="")
        member = ev(2, type="m.room.member", state_key=ALICE)
        name1 = ev(3, type="m.room.name", state_key="")
        state = [StateRow(ROOM_A, e.type, e.state_key, e.event_id, e.pos) for e in (create, member, name1)]
        await db.events.persist_batch([create, member, name1], state, [room(last="$ev3", depth=3)], [], [])
        assert sorted(await db.events.load_current_state(), key=lambda t: t[1].pos) == [
            (ROOM_A, create), (ROOM_A, member), (ROOM_A, name1)
        ]

        # A later batch replaces the name; two rows for one key in a batch: the last wins.
        name2, name3, msg = ev(4, type="m.room.name", state_key=""), ev(5, type="m.room.name", state_key=""), ev(6)
        await db.events.persist_batch(
            [name2, name3, msg],
            [StateRow(ROOM_A, "m.room.name", "", e.event_id, e.pos) for e in (name2, name3)],
            [],
            [(ROOM_A, "$ev6", 6)],
            [],
        )
        assert sorted(await db.events.load_current_state(), key=lambda t: t[1].pos) == [
            (ROOM_A, create), (ROOM_A, member), (ROOM_A, name3)
        ]
        # State may also move back to an older event (state resolution decides, not the store).
        await db.events.persist_batch([], [StateRow(ROOM_A, "m.room.name", "", "$ev3", 3)], [], [], [])
        assert (ROOM_A, name1) in await db.events.load_current_state()

    backend.run(go())


def test_rooms_and_extremities(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        assert await db.events.load_rooms() == []
        a, b = room(ROOM_A), attr.evolve(room(ROOM_B, "$ev2"), is_public=False, kind="dm")
        await db.events.persist_batch([ev(1), ev(2, ROOM_B)], [], [a, b], [], [])
        assert sorted(await db.events.load_rooms(), key=lambda r: r.room_id) == [a, b]
        await db.events.persist_batch([ev(3), ev(4)], [], [], [(ROOM_A, "$ev3", 2), (ROOM_A, "$ev4", 3)], [])
        assert sorted(await db.events.load_rooms(), key=lambda r: r.room_id) == [
            attr.evolve(a, last_event_id="$ev4", depth=3), b
        ]

    backend.run(go())


def test_txns(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        assert await db.events.get_txn(ALICE, "t1") is None
        txn = TxnRow(ALICE, "t1", "$ev1", 1)
        await db.events.persist_batch([ev(1)], [], [room()], [], [txn, TxnRow(BOB, "t1", "$ev2", 2)])
        assert await db.events.get_txn(ALICE, "t1") == txn
        assert await db.events.get_txn(BOB, "t1") == TxnRow(BOB, "t1", "$ev2", 2)
        assert await db.events.get_txn(ALICE, "t2") is None
        with pytest.raises(IntegrityError):  # the same (user, txn_id) again
            await db.events.persist_batch([ev(3)], [], [], [], [TxnRow(ALICE, "t1", "$ev3", 3)])
        assert await db.events.get_event("$ev3") is None

    backend.run(go())


def test_persist_batch_is_atomic(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        create = ev(1, type="m.room.create", state_key="")
        await db.events.persist_batch([create], [StateRow(ROOM_A, "m.room.create", "", "$ev1", 1)], [room()], [], [])
        before = (await db.events.load_current_state(), await db.events.load_rooms())
        dup = attr.evolve(ev(4), event_id="$ev1")  # an event ID that already exists
        for bad in ([ev(2), ev(3), dup], [ev(2), ev(3), attr.evolve(ev(5), event_id="$ev2")]):
            with pytest.raises(IntegrityError):
                await db.events.persist_batch(
                    bad,
                    [StateRow(ROOM_A, "m.room.name", "", "$ev2", 2), StateRow(ROOM_A, "m.room.create", "", "$ev3", 3)],
                    [room(ROOM_B, "$ev3")],
                    [(ROOM_A, "$ev3", 3)],
                    [TxnRow(ALICE, "t1", "$ev2", 2)],
                )
            assert await db.events.max_pos() == 1
            assert await db.events.count_events() == 1
            assert await db.events.get_event("$ev2") is None
            assert await db.events.get_txn(ALICE, "t1") is None
            assert (await db.events.load_current_state(), await db.events.load_rooms()) == before
        # The store is still usable afterwards.
        await db.events.persist_batch([ev(2)], [], [], [(ROOM_A, "$ev2", 2)], [])
        assert await db.events.max_pos() == 2

    backend.run(go())


def test_get_event_count_events_and_bulk_insert(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        assert await db.events.count_events() == 0
        assert await db.events.get_event("$ev1") is None
        rows = [ev(p, ROOM_A if p % 4 else ROOM_B) for p in range(1, 25_001)]
        await db.events.bulk_insert_events(rows)
        assert await db.events.get_event("$ev8") == ev(8, ROOM_B)
        assert await db.events.count_events() == 25_000
        assert await db.events.count_events(ROOM_B) == 6_250
        assert await db.events.count_events(ROOM_C) == 0
        assert await db.events.max_pos() == 25_000
        assert await db.events.load_current_state() == []
        assert positions(await db.events.history(ROOM_B, "b", None, 2)) == [25_000, 24_996]

    backend.run(go())


# --- SQLite specifics ------------------------------------------------------------------------


def test_sqlite_connection_settings(sqlite_backend: Backend) -> None:
    backend = sqlite_backend

    async def go() -> None:
        db = await backend.open()
        for engine, query_only in ((db.engine, 0), (db.read_engine, 1)):
            async with engine.connect() as conn:
                got = [
                    (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                    for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "query_only")
                ]
            assert got[:3] == ["wal", 2, 1] and got[3] > 0 and got[4] == query_only

    backend.run(go())


def test_sqlite_reads_do_not_wait_for_the_writer(sqlite_backend: Backend) -> None:
    backend = sqlite_backend

    async def go() -> None:
        db = await backend.open()
        await db.events.persist_batch([ev(1)], [], [room()], [], [])
        async with db.engine.begin() as conn:  # a write transaction in flight
            await conn.execute(schema.events.insert(), [attr.asdict(ev(2))])
            got = await asyncio.wait_for(db.events.history(ROOM_A, "b", None, 10), timeout=2)
            assert positions(got) == [1]  # the committed snapshot, without the open write
        assert positions(await db.events.history(ROOM_A, "b", None, 10)) == [2, 1]

    backend.run(go())


def test_sqlite_query_plans_use_indexes(sqlite_backend: Backend) -> None:
    backend = sqlite_backend

    async def go() -> None:
        db = await backend.open()
        async with db.read_engine.connect() as conn:

            async def plan(stmt: sa.Executable) -> str:
                sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True}))
                n = sql.count("?")
                return " | ".join(r[-1] for r in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, (1,) * n))

            from sharon_server.storage import events as ev_mod

            assert "USING INDEX ix_events_room_id_pos" in await plan(ev_mod._HISTORY_B)
            assert "USING INDEX ix_events_room_id_pos" in await plan(ev_mod._HISTORY_F)
            state_plan = await plan(ev_mod._CURRENT_STATE)
            assert "SCAN current_state" in state_plan and "INTEGER PRIMARY KEY" in state_plan

    backend.run(go())


def test_sqlite_acknowledged_batch_survives_sigkill(tmp_path: Path) -> None:
    """A batch whose persist_batch returned is there after the process is SIGKILLed."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"
    child = textwrap.dedent(
        f"""
        import asyncio
        from sharon_server.storage.database import open_database
        from sharon_server.storage.rows import EventRow, RoomRow
        async def main():
            db = await open_database({url!r})
            rows = [EventRow(p, "$ev%d" % p, {ROOM_A!r}, "m.room.message", None, "@a:x", p, b"{{}}") for p in (1, 2)]
            await db.events.persist_batch(rows, [], [RoomRow({ROOM_A!r}, "chat", "@a:x", True, 1, "$ev2", 2)], [], [])
            print("acked", flush=True)
            while True:
                await asyncio.sleep(1)
        asyncio.run(main())
        """
    )
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    with subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"acked"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    async def check() -> None:
        db = await open_database(url)
        try:
            assert positions(await db.events.history(ROOM_A, "f", None, 10)) == [1, 2]
        finally:
            await db.close()

    run(check())


def test_start_up_head_check_agrees_with_alembic() -> None:
    """Start-up skips importing Alembic when the stored revision equals ``shipped_head``."""
    from sharon_server.storage.database import shipped_head

    assert shipped_head() == head_revision()
