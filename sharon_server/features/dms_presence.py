"""Ephemeral and per-user room state for chat: typing indicators, read markers, unread counts.

Typing is never persisted: one timer per (room, user) on the reactor's asyncio loop expires
a typing state after ``ttl_s``. Read markers are persisted (``read_markers``) and mirrored
in memory. Unread counts come from memory only, so ``rooms`` and ``service_rooms`` can be
decorated synchronously: each room keeps the positions and senders of its last
``MAX_UNREAD + 1`` countable events (loaded at start-up with one indexed query per room,
then maintained by an observer of committed events).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Set, Tuple

import sqlalchemy as sa
from twisted.logger import Logger

from protocol import dms as P
from protocol.errors import RateLimited
from protocol.events import CLIENT_ROOM_KINDS
from sharon_server.event_types import EventType
from sharon_server.storage._sql import insert_for
from sharon_server.storage.schema import events as events_table
from sharon_server.storage.schema_dms import read_markers

__all__ = ["push_frame", "TypingTracker", "ReadState"]

log = Logger(namespace="sharon.dms")


def push_frame(conns: Iterable[Any], frame: Dict[str, Any]) -> int:
    """Write ``frame`` to every connection, encoding it once per codec; returns how many."""
    prepared: Dict[Any, Any] = {}
    sent = 0
    for conn in conns:
        codec = conn.codec
        message = prepared.get(codec)
        if message is None:
            message = prepared[codec] = conn.factory.prepareMessage(codec.encode(frame), codec.binary)
        conn.deliver_prepared(message)
        sent += 1
    return sent


class TypingTracker:
    """Who is typing in which room; pushes the room's typing list whenever it changes."""

    def __init__(self, hub: Any, pseudonym_of: Any, ttl_s: float, max_entries: int = 100_000) -> None:
        self._hub = hub
        self._pseudonym_of = pseudonym_of
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._typing: Dict[str, Dict[str, asyncio.TimerHandle]] = {}
        self._count = 0

    def typers(self, room_id: str) -> List[str]:
        """User IDs typing in ``room_id`` now."""
        return sorted(self._typing.get(room_id, ()))

    def set(self, room_id: str, user_id: str, typing: bool) -> None:
        """Start (or refresh) or stop ``user_id`` typing; pushes only on a change."""
        room = self._typing.get(room_id)
        handle = room.get(user_id) if room else None
        if handle is not None:
            handle.cancel()
        if not typing:
            if handle is not None:
                self._drop(room_id, user_id)
                self._push(room_id, user_id)
            return
        if handle is None and self._count >= self.max_entries:
            raise RateLimited("too many typing indicators right now; try again shortly")
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.ttl_s, self._expire, room_id, user_id)
        self._typing.setdefault(room_id, {})[user_id] = timer
        if handle is None:
            self._count += 1
            self._push(room_id, user_id)

    def stop(self, room_id: str, user_id: str) -> None:
        """``user_id`` sent something or left: no longer typing in ``room_id``."""
        room = self._typing.get(room_id)
        if room and user_id in room:
            self.set(room_id, user_id, False)

    def _drop(self, room_id: str, user_id: str) -> None:
        room = self._typing[room_id]
        del room[user_id]
        self._count -= 1
        if not room:
            del self._typing[room_id]

    def _expire(self, room_id: str, user_id: str) -> None:
        room = self._typing.get(room_id)
        if room and user_id in room:
            self._drop(room_id, user_id)
            self._push(room_id, user_id)

    def _push(self, room_id: str, actor: str) -> None:
        subs = self._hub.room_subs.get(room_id)
        if not subs:
            return
        typers = {u: self._pseudonym_of(u) or "" for u in self._typing.get(room_id, ())}
        push_frame([c for c in subs if c.user_id != actor], P.typing_frame(room_id, typers))

    def memory_report(self) -> Dict[str, int]:
        """How many typing states are held."""
        return {"typing": self._count}


class ReadState(EventType):
    """Read markers and unread counts; also the observer that counts new events per room."""

    def __init__(self, rooms: Any, db: Any, hub: Any, now_ms: Any, typing: TypingTracker) -> None:
        self._rooms = rooms
        self._db = db
        self._hub = hub
        self._now_ms = now_ms
        self._typing = typing
        self.markers: Dict[Tuple[str, str], int] = {}
        self._recent: Dict[str, Deque[Tuple[int, str]]] = {}
        self._background: Set["asyncio.Future[None]"] = set()
        self._counts: Dict[str, bool] = {}  # per registered event type (a fixed set)
        self._entries: Dict[Tuple[str, str], int] = {}
        """Markers of joins not stored yet (``_flush_entries``)."""
        self._entries_flush: Optional["asyncio.Future[None]"] = None
        t = read_markers
        upsert = insert_for(db.dialect)(t)
        self._upsert_forward = upsert.on_conflict_do_update(
            index_elements=[t.c.user_id, t.c.room_id],
            set_={"pos": upsert.excluded.pos, "updated_ts": upsert.excluded.updated_ts},
            where=t.c.pos < upsert.excluded.pos)

    # -- what counts ---------------------------------------------------------------------
    def counts(self, etype: str, is_state: bool) -> bool:
        """Messages and posts count; state events never. A feature's EventType can opt out
        (reactions, presents) with ``counts_unread = False``."""
        if is_state:
            return False
        hit = self._counts.get(etype)
        if hit is None:
            spec = self._rooms.event_types.get(etype)
            if spec is None:
                return True
            hit = self._counts[etype] = bool(getattr(spec, "counts_unread", True))
        return hit

    # -- observer hooks ------------------------------------------------------------------
    def committed(self, ctx: Any, event_id: str, pos: int, event: Dict[str, Any]) -> None:
        """Remember a countable event; a sender who sends has stopped typing."""
        if self.counts(event["type"], "state_key" in event):
            recent = self._recent.get(ctx.room_id)
            if recent is None:
                recent = self._recent[ctx.room_id] = deque(maxlen=P.MAX_UNREAD + 1)
            recent.append((pos, event["sender"]))
        self._typing.stop(ctx.room_id, event["sender"])

    # -- loading -------------------------------------------------------------------------
    async def load(self) -> None:
        """Read every marker and the last countable events of each room."""
        e = events_table
        async with self._db.read_engine.connect() as conn:
            rows = await conn.execute(sa.select(read_markers.c.user_id, read_markers.c.room_id, read_markers.c.pos))
            self.markers = {(r.user_id, r.room_id): r.pos for r in rows}
            self._recent = {}
            for room_id in [r for r, k in self._rooms.kinds.items() if k in CLIENT_ROOM_KINDS]:
                rows = await conn.execute(
                    sa.select(e.c.pos, e.c.sender, e.c.type)
                    .where(e.c.room_id == room_id, e.c.state_key.is_(None))
                    .order_by(e.c.pos.desc()).limit(4 * (P.MAX_UNREAD + 1)))
                kept = [(r.pos, r.sender) for r in rows if self.counts(r.type, False)][: P.MAX_UNREAD + 1]
                if kept:
                    self._recent[room_id] = deque(reversed(kept), maxlen=P.MAX_UNREAD + 1)
        log.info("dms.read_state_loaded", markers=len(self.markers), rooms=len(self._recent))

    # -- reading -------------------------------------------------------------------------
    def unread(self, user_id: str, room_id: str) -> int:
        """Countable events by others after the user's marker (at most MAX_UNREAD)."""
        recent = self._recent.get(room_id)
        if not recent:
            return 0
        marker = self.markers.get((user_id, room_id), 0)
        n = 0
        for pos, sender in reversed(recent):
            if pos <= marker:
                break
            if sender != user_id:
                n += 1
        return min(n, P.MAX_UNREAD)

    def decorate(self, user_id: str, summaries: List[Dict[str, Any]]) -> None:
        """``room_list_decorators`` hook: add ``unread`` (and ``read_pos``) to summaries."""
        for summary in summaries:
            room_id = summary.get("room_id")
            joined = summary.get("membership") == "join"
            summary["unread"] = self.unread(user_id, room_id) if joined else 0
            summary["read_pos"] = self.markers.get((user_id, room_id), 0)

    # -- writing -------------------------------------------------------------------------
    def on_entry(self, user_id: str, room_id: str, state: Any) -> None:
        """Join guard (never refuses): someone joining or invited has "read" what came before.

        Only when they have no marker yet; stored in the background, monotonically, so a
        later ``mark_read`` always wins.
        """
        key = (user_id, room_id)
        if key in self.markers:
            return
        pos = self._hub.delivered_pos
        self.markers[key] = pos
        self._entries[key] = max(pos, self._entries.get(key, 0))
        if self._entries_flush is None:
            task = self._entries_flush = asyncio.ensure_future(self._flush_entries())
            self._background.add(task)
            task.add_done_callback(self._background_done)

    async def _flush_entries(self) -> None:
        """Store the markers of joins in batches: one transaction for every marker that
        accumulated while the previous one ran. A join storm (a thousand members joining a
        room) cost one writer transaction per join through the async engine before, about
        5 ms of reactor each, queued behind the joins and delaying the room's next
        messages by seconds. Bounded by the joins themselves (one entry per member and
        room, merged)."""
        try:
            while self._entries:
                batch, self._entries = self._entries, {}
                await self._store_entries(batch)
        finally:
            self._entries_flush = None

    async def _store_entries(self, batch: Dict[Tuple[str, str], int]) -> None:
        """One transaction: each marker inserted, or moved forward, never back (one upsert
        with a condition, so a join's marker stored after a later ``mark`` cannot undo it)."""
        now = self._now_ms()
        rows = [{"user_id": u, "room_id": r, "pos": pos, "updated_ts": now} for (u, r), pos in batch.items()]
        async with self._db.engine.begin() as conn:
            await conn.execute(self._upsert_forward, rows)

    def _background_done(self, task: "asyncio.Future[None]") -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warn("dms.marker_store_failed", error=repr(task.exception()))

    async def mark(self, user_id: str, room_id: str, pos: Optional[int], origin: Any) -> int:
        """Move the marker forward to ``pos`` (default: now); returns the marker after the call."""
        upto = self._hub.delivered_pos
        wanted = upto if pos is None else min(pos, upto)
        key = (user_id, room_id)
        old = self.markers.get(key)
        if old is not None and wanted <= old:
            return old
        self.markers[key] = wanted
        await self._store_entries({key: wanted})
        current = self.markers[key]
        others = [c for c in self._hub.user_conns.get(user_id, ()) if c is not origin]
        if others:
            push_frame(others, P.read_marker_frame(room_id, current))
        return current

    def memory_report(self) -> Dict[str, int]:
        """Sizes of the in-memory read state."""
        return {"read_markers": len(self.markers), "unread_rooms": len(self._recent),
                "read_markers_unstored": len(self._entries)}
