"""Events, rooms, current state and client transaction IDs: the group-commit hot path.

``persist_batch`` writes everything one group commit produced in ONE transaction with one
multi-row (executemany) statement per table. Reads are single indexed statements on the
read engine: ``history`` is a range scan of the ``(room_id, pos)`` index, and
``load_current_state`` reads ``current_state`` joined to ``events`` by primary key, never
scanning the events table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import sqlalchemy as sa

from sharon_server.storage._sql import (
    BIGINT_MAX, BIGINT_MIN, Engines, SqliteTxn, immediate_transaction, insert_for, on_sqlite_thread, to_params,
)
from sharon_server.storage.rows import EventRow, RoomRow, StateRow, TxnRow
from sharon_server.storage.schema import current_state, events, rooms, txns

__all__ = ["EventStore", "Extremity"]

Extremity = Tuple[str, str, int]
"""``(room_id, last_event_id, depth)``: a room's new forward extremity."""

_EVENT_COLS = tuple(events.c.keys())
_STATE_COLS = tuple(current_state.c.keys())
_ROOM_COLS = tuple(rooms.c.keys())
_TXN_COLS = tuple(txns.c.keys())
_BULK_CHUNK = 10_000
_MAX_SYNC_READERS = 16

_pos = events.c.pos
_room = sa.bindparam("room_id")
_limit = sa.bindparam("limit", type_=sa.Integer)

_HISTORY_B = (
    sa.select(*events.c)
    .where(events.c.room_id == _room, _pos <= sa.bindparam("hi", type_=sa.BigInteger))
    .order_by(_pos.desc())
    .limit(_limit)
)
_HISTORY_F = (
    sa.select(*events.c)
    .where(
        events.c.room_id == _room,
        _pos > sa.bindparam("lo", type_=sa.BigInteger),
        _pos <= sa.bindparam("hi", type_=sa.BigInteger),
    )
    .order_by(_pos)
    .limit(_limit)
)
_SINCE = (
    sa.select(*events.c)
    .where(
        events.c.room_id.in_(sa.bindparam("room_ids", expanding=True)),
        _pos > sa.bindparam("lo", type_=sa.BigInteger),
        _pos <= sa.bindparam("hi", type_=sa.BigInteger),
    )
    .order_by(_pos)
    .limit(_limit)
)
_EVENT_BY_ID = sa.select(*events.c).where(events.c.event_id == sa.bindparam("event_id"))
_MAX_POS = sa.select(sa.func.coalesce(sa.func.max(_pos), 0))
_COUNT_ALL = sa.select(sa.func.count()).select_from(events)
_COUNT_ROOM = sa.select(sa.func.count()).select_from(events).where(events.c.room_id == _room)
_ROOMS = sa.select(*rooms.c)
_CURRENT_STATE = sa.select(current_state.c.room_id, *events.c).select_from(
    current_state.join(events, events.c.pos == current_state.c.pos)
)
_TXN = sa.select(*txns.c).where(
    txns.c.user_id == sa.bindparam("user_id"), txns.c.txn_id == sa.bindparam("txn_id")
)
_RECENT_TXNS = sa.select(*txns.c).order_by(txns.c.pos.desc()).limit(_limit)
_INSERT_EVENTS = events.insert()
_INSERT_ROOMS = rooms.insert()
_INSERT_TXNS = txns.insert()
_SET_EXTREMITY = (
    sa.update(rooms)
    .where(rooms.c.room_id == sa.bindparam("b_room_id"))
    .values(last_event_id=sa.bindparam("b_last_event_id"), depth=sa.bindparam("b_depth"))
)


class EventStore:
    """Persisted events and what is derived from them in the same transaction."""

    def __init__(self, engines: Engines) -> None:
        self._w = engines.write
        self._r = engines.read
        self._dialect = engines.dialect
        self._sync_engine: Optional[Tuple[Any, sa.engine.Engine]] = None
        self._sync_readers: Dict[int, Tuple[Any, sa.engine.Engine]] = {}
        stmt = insert_for(engines.dialect)(current_state)
        self._upsert_state = stmt.on_conflict_do_update(
            index_elements=[current_state.c.room_id, current_state.c.type, current_state.c.state_key],
            set_={"event_id": stmt.excluded.event_id, "pos": stmt.excluded.pos},
        )

    async def max_pos(self) -> int:
        """The highest persisted stream position, 0 when there are no events."""
        async with self._r.connect() as conn:
            return int((await conn.execute(_MAX_POS)).scalar_one())

    async def persist_batch(
        self,
        events: Sequence[EventRow],
        state: Sequence[StateRow] = (),
        rooms_new: Sequence[RoomRow] = (),
        extremities: Sequence[Extremity] = (),
        txns: Sequence[TxnRow] = (),
        extra: Sequence[Tuple[Any, List[Dict[str, Any]]]] = (),
    ) -> None:
        """Persist one group commit atomically: all of it, or (on any error) none of it.

        ``extra`` is ``(statement, params list)`` pairs for rows derived from the events
        (thread indexes, tags, notifications, ...), executed after the events, in order, in
        the same transaction, so derived data is never out of step with the event stream.

        ``state`` rows replace the current state at their ``(room_id, type, state_key)``
        (the last row for a key wins); ``extremities`` set ``rooms.last_event_id``/``depth``
        (the last one per room wins). A duplicate event ID, pos or txn raises
        ``sqlalchemy.exc.IntegrityError`` and nothing is written.
        """
        if not (events or state or rooms_new or extremities or txns or extra):
            return
        state_params = to_params({(s.room_id, s.type, s.state_key): s for s in state}.values(), _STATE_COLS)
        ext_params = [
            {"b_room_id": room_id, "b_last_event_id": event_id, "b_depth": depth}
            for room_id, (event_id, depth) in {r: (e, d) for r, e, d in extremities}.items()
        ]
        steps: List[Tuple[Any, List[Dict[str, Any]]]] = []
        if rooms_new:
            steps.append((_INSERT_ROOMS, to_params(rooms_new, _ROOM_COLS)))
        if events:
            steps.append((_INSERT_EVENTS, to_params(events, _EVENT_COLS)))
        if state_params:
            steps.append((self._upsert_state, state_params))
        if ext_params:
            steps.append((_SET_EXTREMITY, ext_params))
        if txns:
            steps.append((_INSERT_TXNS, to_params(txns, _TXN_COLS)))
        steps.extend((stmt, params) for stmt, params in extra if params)
        if self._dialect == "sqlite":
            await self._run_on_sqlite_thread(steps)
        else:
            await self._run_steps(steps)

    async def _run_steps(self, steps: List[Tuple[Any, List[Dict[str, Any]]]]) -> None:
        """The generic path (PostgreSQL): one transaction, one executemany per statement."""
        _finish_events(steps)
        async with self._w.begin() as conn:
            for stmt, params in steps:
                await conn.execute(stmt, params)

    async def _run_on_sqlite_thread(self, steps: List[Tuple[Any, List[Dict[str, Any]]]]) -> None:
        """The whole transaction in ONE call on the writer connection's aiosqlite thread.

        Through the async engine every statement costs several thread hops (cursor, execute,
        close; BEGIN and COMMIT too): about twenty per group commit. Here the pool still hands
        out the single writer connection (so no other writer runs meanwhile), and a
        synchronous SQLAlchemy engine bound to that very ``sqlite3`` connection runs
        ``BEGIN IMMEDIATE``, the same Core statements (same compilation, defaults and type
        processing) and ``COMMIT`` on its thread: one hop (``on_sqlite_thread``).
        """
        await on_sqlite_thread(self._w, _run_sync_steps, self._sync_engine_for, steps)

    async def _fetch(self, stmt: Any, params: Dict[str, Any]) -> List[Any]:
        """Every row of one read. On SQLite: one call on a reader connection's aiosqlite
        thread (execute and fetch together; the read pool is autocommit with no reset, so
        that is the only hop), instead of one hop each for the cursor, the execute, the
        fetch and the close (decision 0014)."""
        if self._dialect != "sqlite":
            async with self._r.connect() as conn:
                return list(await conn.execute(stmt, params))
        return await on_sqlite_thread(self._r, _fetch_sync, self._sync_reader_for, stmt, params)

    def _sync_reader_for(self, dbapi_conn: Any) -> sa.engine.Engine:
        """Like ``_sync_engine_for``, for the read pool's connections (one engine each)."""
        cached = self._sync_readers.get(id(dbapi_conn))
        if cached is not None and cached[0] is dbapi_conn:
            return cached[1]
        if len(self._sync_readers) >= _MAX_SYNC_READERS:  # connections were replaced: start over
            self._sync_readers.clear()
        engine = _borrowing_engine(dbapi_conn)
        self._sync_readers[id(dbapi_conn)] = (dbapi_conn, engine)
        return engine

    def _sync_engine_for(self, dbapi_conn: Any) -> sa.engine.Engine:
        """A synchronous engine whose one connection IS ``dbapi_conn`` (the writer's sqlite3
        connection), made once and again only if the pool replaced that connection."""
        cached = self._sync_engine
        if cached is not None and cached[0] is dbapi_conn:
            return cached[1]
        engine = _borrowing_engine(dbapi_conn)
        sa.event.listen(engine, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
        self._sync_engine = (dbapi_conn, engine)
        return engine

    async def load_rooms(self) -> List[RoomRow]:
        """Every room with its forward extremity (for start-up)."""
        async with self._r.connect() as conn:
            return [RoomRow(*row) for row in await conn.execute(_ROOMS)]

    async def load_current_state(self) -> List[Tuple[str, EventRow]]:
        """``(room_id, event)`` for every current-state event of every room (for start-up)."""
        async with self._r.connect() as conn:
            result = await conn.execute(_CURRENT_STATE)
            return [(row[0], EventRow(*row[1:])) for row in result]

    async def get_txn(self, user_id: str, txn_id: str) -> Optional[TxnRow]:
        """What an earlier ``send`` with this account and ``txn_id`` produced, or None."""
        async with self._r.connect() as conn:
            row = (await conn.execute(_TXN, {"user_id": user_id, "txn_id": txn_id})).first()
        return None if row is None else TxnRow(*row)

    async def recent_txns(self, limit: int) -> List[TxnRow]:
        """The ``limit`` most recent client transactions, newest first (for the idempotency cache)."""
        async with self._r.connect() as conn:
            return [TxnRow(*row) for row in await conn.execute(_RECENT_TXNS, {"limit": limit})]

    async def history(
        self,
        room_id: str,
        direction: Literal["b", "f"],
        from_pos: Optional[int],
        limit: int,
        max_pos: Optional[int] = None,
    ) -> List[EventRow]:
        """One page of a room's events.

        ``"b"``: ``pos < from_pos`` (or from the end), newest first; ``"f"``:
        ``pos > from_pos`` (or from the start), oldest first. ``max_pos`` (inclusive) hides
        later events, e.g. those after a member left.
        """
        return [EventRow(*row) for row in await self.history_rows(room_id, direction, from_pos, limit, max_pos)]

    async def history_rows(
        self,
        room_id: str,
        direction: Literal["b", "f"],
        from_pos: Optional[int],
        limit: int,
        max_pos: Optional[int] = None,
    ) -> List[Any]:
        """``history`` as the database's rows (``EventRow``'s fields by name, not EventRows):
        the history op's path, which does not need 100 frozen attrs objects per page
        (~20-30 µs of the page's reactor CPU)."""
        if limit <= 0:
            return []
        hi = BIGINT_MAX if max_pos is None else max_pos
        if direction == "b":
            if from_pos is not None:
                hi = min(hi, from_pos - 1)
            stmt, params = _HISTORY_B, {"room_id": room_id, "hi": hi, "limit": limit}
        elif direction == "f":
            lo = BIGINT_MIN if from_pos is None else from_pos
            stmt, params = _HISTORY_F, {"room_id": room_id, "lo": lo, "hi": hi, "limit": limit}
        else:
            raise ValueError(f"direction must be 'b' or 'f', not {direction!r}")
        return await self._fetch(stmt, params)

    async def events_since(
        self, room_ids: Sequence[str], since_pos: int, limit: int, upto_pos: Optional[int] = None
    ) -> List[EventRow]:
        """Events of any of ``room_ids`` with ``since_pos < pos <= upto_pos``, by pos ascending."""
        if not room_ids or limit <= 0:
            return []
        params = {
            "room_ids": list(room_ids),
            "lo": since_pos,
            "hi": BIGINT_MAX if upto_pos is None else upto_pos,
            "limit": limit,
        }
        return [EventRow(*row) for row in await self._fetch(_SINCE, params)]

    async def get_event(self, event_id: str) -> Optional[EventRow]:
        """The event with this ID, or None."""
        rows = await self._fetch(_EVENT_BY_ID, {"event_id": event_id})
        return EventRow(*rows[0]) if rows else None

    async def count_events(self, room_id: Optional[str] = None) -> int:
        """How many events are stored, in all rooms or in one."""
        async with self._r.connect() as conn:
            if room_id is None:
                return int((await conn.execute(_COUNT_ALL)).scalar_one())
            return int((await conn.execute(_COUNT_ROOM, {"room_id": room_id})).scalar_one())

    async def bulk_insert_events(self, rows: Sequence[EventRow]) -> None:
        """BENCHMARKS AND TESTS ONLY: insert events fast, touching no state, rooms or txns."""
        async with self._w.begin() as conn:
            for i in range(0, len(rows), _BULK_CHUNK):
                await conn.execute(_INSERT_EVENTS, to_params(rows[i : i + _BULK_CHUNK], _EVENT_COLS))


class _Borrowed:
    """The writer's sqlite3 connection lent to a synchronous engine, which must never close
    it (the async pool owns it): everything else is passed through."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _borrowing_engine(dbapi_conn: Any) -> sa.engine.Engine:
    borrowed = _Borrowed(dbapi_conn)
    return sa.create_engine(
        "sqlite+pysqlite://", creator=lambda: borrowed, poolclass=sa.pool.StaticPool,
        hide_parameters=True,  # no bound values (bodies, pseudonyms) in exception texts
    )


def _fetch_sync(engine_for: Any, stmt: Any, params: Dict[str, Any], dbapi_conn: Any) -> List[Any]:
    """Runs ON the aiosqlite thread of a reader connection: one statement, every row."""
    with engine_for(dbapi_conn).connect() as conn:
        return list(conn.execute(stmt, params))


def _finish_events(steps: List[Tuple[Any, List[Dict[str, Any]]]]) -> None:
    """Sign the events built unsigned (``protocol.events.UnsignedEvent``: their ``json`` is
    finished here, decision 0018): on SQLite this runs on the writer thread, beside the
    reactor; Ed25519 signing leaves the GIL to it."""
    for stmt, params in steps:
        if stmt is _INSERT_EVENTS:
            for p in params:
                raw = p["json"]
                if type(raw) is not bytes:
                    p["json"] = raw.finish()


_RawPlan = Tuple[str, Tuple[str, ...], Optional[Tuple[Any, ...]]]
_RAW_PLANS: Dict[Tuple[int, Tuple[str, ...]], Tuple[Any, Optional[_RawPlan]]] = {}
_MAX_RAW_PLANS = 512


def _raw_plan(stmt: Any, keys: Tuple[str, ...], dialect: Any) -> Optional[_RawPlan]:
    """``(sql, bind names in order, bind processors or None)`` for running ``stmt`` with
    parameter dicts keyed by ``keys`` straight on the sqlite3 cursor, compiled once by
    SQLAlchemy for SQLite; None when the statement needs more than that (defaults filled
    in by SQLAlchemy, RETURNING, expanding parameters): it then goes through SQLAlchemy."""
    cache_key = (id(stmt), keys)
    hit = _RAW_PLANS.get(cache_key)
    if hit is not None and hit[0] is stmt:
        return hit[1]
    plan: Optional[_RawPlan] = None
    try:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or ())
        if set(names) <= set(keys) and not getattr(compiled, "returning", None) \
                and "[POSTCOMPILE" not in compiled.string:
            procs = tuple(compiled.binds[n].type.bind_processor(dialect) for n in names)
            plan = (compiled.string, names, procs if any(p is not None for p in procs) else None)
    except Exception:  # noqa: BLE001 - anything unusual takes SQLAlchemy's own path
        plan = None
    if len(_RAW_PLANS) >= _MAX_RAW_PLANS:
        _RAW_PLANS.clear()
    _RAW_PLANS[cache_key] = (stmt, plan)
    return plan


def _raw_rows(plan: _RawPlan, params: List[Dict[str, Any]]) -> List[Tuple[Any, ...]]:
    _, names, procs = plan
    if procs is None:
        return [tuple([p[n] for n in names]) for p in params]
    return [tuple([v if f is None else f(v) for f, v in zip(procs, [p[n] for n in names])]) for p in params]


def _run_sync_steps(engine_for: Any, steps: List[Tuple[Any, List[Dict[str, Any]]]], dbapi_conn: Any) -> None:
    """Runs ON the aiosqlite thread: the events' signatures, then BEGIN IMMEDIATE, every
    statement, COMMIT (or ROLLBACK).

    The statements are SQLAlchemy Core, compiled by SQLAlchemy once each (``_raw_plan``),
    then run as plain ``executemany`` on the sqlite3 connection: SQLAlchemy's per-execution
    work (execution context, parameter processing per row) held the GIL on this thread
    while the reactor thread waited for it (decision 0018). A batch with a statement that
    needs SQLAlchemy's execution goes through it whole, as before. Errors are SQLAlchemy's
    (``IntegrityError`` for a duplicate), without parameters in their text.
    """
    _finish_events(steps)
    engine = engine_for(dbapi_conn)
    dialect = engine.dialect
    planned = []
    try:
        for stmt, params in steps:
            plan = _raw_plan(stmt, tuple(params[0]), dialect)
            if plan is None:
                break
            planned.append((plan, _raw_rows(plan, params)))
    except KeyError:  # rows with different keys: SQLAlchemy reports it properly
        planned = []
    if len(planned) != len(steps):
        with engine.begin() as conn:
            for stmt, params in steps:
                conn.execute(stmt, params)
        return

    def run(txn: SqliteTxn) -> None:
        for plan, rows in planned:
            if len(rows) == 1:
                txn.execute(plan[0], rows[0])
            else:
                txn.executemany(plan[0], rows)

    immediate_transaction(dbapi_conn, run, dialect)
