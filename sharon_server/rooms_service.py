"""Rooms: create, membership, messages, history and resume over the pure core.

Room state lives in memory (loaded once at start-up from ``current_state``). An event is
built, authorised against that state, hashed and signed, applied to the in-memory state and
given its stream position synchronously, so events of one room are totally ordered without
locks. It is then group-committed; the sender is acknowledged and the event fanned out only
after its transaction has committed.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from twisted.logger import Logger

from protocol.canonical_json import encode_canonical
from protocol.errors import (
    BadField, Forbidden, NotFound, NotInRoom, RoomNotFound, TooLarge, Unavailable,
)
from protocol.events import MAX_PDU_BYTES, ROOM_VERSION, compute_event_id, sign_event, to_client_event
from protocol.signing import SigningKey
from rooms import auth
from rooms.builder import initial_state
from rooms.state import RoomState
from sharon_server.accounts import Session
from sharon_server.hub import Hub
from sharon_server.persist import GroupCommitter, PendingEvent
from sharon_server.storage.rows import EventRow, RoomRow, StateRow, TxnRow

__all__ = ["RoomService"]

log = Logger(namespace="sharon.rooms")

_MEMBER = "m.room.member"


class RoomService:
    """Owns every room's in-memory state and the path from request to committed event."""

    def __init__(self, *, store: Any, accounts: Any, hub: Hub, signing_key: SigningKey,
                 server_name: str, now_ms: Callable[[], int], max_body_chars: int,
                 txn_cache_size: int) -> None:
        self._store = store
        self._accounts = accounts
        self._hub = hub
        self._key = signing_key
        self._server_name = server_name
        self._now_ms = now_ms
        self.max_body_chars = max_body_chars
        self._txn_cache_size = txn_cache_size
        self.rooms: Dict[str, RoomState] = {}
        self.kinds: Dict[str, str] = {}
        self._extremity: Dict[str, Tuple[str, int]] = {}
        self._member_pos: Dict[Tuple[str, str], int] = {}
        self._joined: Dict[str, Set[str]] = {}
        self._other_membership: Dict[str, Set[str]] = {}
        self._txns: "OrderedDict[Tuple[str, str], Tuple[str, int]]" = OrderedDict()
        self._txns_complete = True
        self._pending_txns: Dict[Tuple[str, str], "asyncio.Future[None]"] = {}
        self._next_pos = 1
        self._broken = False
        self.committer = GroupCommitter(store.persist_batch, self._on_commit, self._on_failure)

    # -- start-up --------------------------------------------------------------------
    async def load(self) -> None:
        """Rebuild in-memory state from storage: rooms, current state, recent txn IDs."""
        self.rooms.clear(); self.kinds.clear(); self._extremity.clear()
        self._member_pos.clear(); self._joined.clear(); self._other_membership.clear()
        for room in await self._store.load_rooms():
            self.kinds[room.room_id] = room.kind
            self._extremity[room.room_id] = (room.last_event_id, room.depth)
        for room_id, row in await self._store.load_current_state():
            event = json.loads(row.json)
            event["event_id"] = row.event_id
            state = self.rooms.get(room_id)
            if state is None:
                state = self.rooms[room_id] = RoomState()
            state.apply(event)
            if row.type == _MEMBER:
                self._index_member(room_id, row.state_key, event["content"].get("membership"), row.pos)
        self._next_pos = await self._store.max_pos() + 1
        self._hub.delivered_pos = self._next_pos - 1
        recent = await self._store.recent_txns(self._txn_cache_size)
        self._txns = OrderedDict(((t.user_id, t.txn_id), (t.event_id, t.pos)) for t in reversed(recent))
        self._txns_complete = len(recent) < self._txn_cache_size
        self._broken = False
        log.info("rooms.loaded", rooms=len(self.rooms), next_pos=self._next_pos)

    def _index_member(self, room_id: str, user_id: str, membership: Optional[str], pos: int) -> None:
        self._member_pos[(room_id, user_id)] = pos
        if membership == "join":
            self._joined.setdefault(user_id, set()).add(room_id)
            self._other_membership.get(user_id, set()).discard(room_id)
        else:
            self._joined.get(user_id, set()).discard(room_id)
            self._other_membership.setdefault(user_id, set()).add(room_id)

    def joined_rooms(self, user_id: str) -> Set[str]:
        """Rooms ``user_id`` is joined to (a live view: copy before iterating across awaits)."""
        return self._joined.get(user_id, set())

    # -- building events -------------------------------------------------------------
    def _check_available(self) -> None:
        if self._broken or self.committer.full:
            raise Unavailable("the server cannot accept writes right now; retry shortly")

    def _build(self, room_id: Optional[str], sender: str, etype: str, content: Dict[str, Any],
               state_key: Optional[str] = None, *, prev: Optional[Tuple[str, int]] = None,
               state: Optional[RoomState] = None) -> Tuple[Dict[str, Any], str, int]:
        """Build, authorise, sign and apply one event; returns (event, event_id, pos)."""
        event: Dict[str, Any] = {
            "sender": sender, "type": etype, "content": content,
            "origin_server_ts": self._now_ms(),
        }
        if state_key is not None:
            event["state_key"] = state_key
        if room_id is None:  # the create event: no room_id, no parents (R12 style)
            event.update(prev_events=[], auth_events=[], depth=1)
        else:
            last_id, depth = prev if prev is not None else self._extremity[room_id]
            state = state if state is not None else self.rooms[room_id]
            event.update(room_id=room_id, prev_events=[last_id], depth=depth + 1,
                         auth_events=state.auth_event_ids_for(etype, state_key, sender, content))
        verdict = auth.check(event, state)
        if isinstance(verdict, auth.Denied):
            raise Forbidden(verdict.reason)
        signed = sign_event(event, self._server_name, self._key)
        event_id = str(compute_event_id(signed))
        pos = self._next_pos
        self._next_pos += 1
        return signed, event_id, pos

    def _pending(self, room_id: str, signed: Dict[str, Any], event_id: str, pos: int,
                 state: RoomState, **extra: Any) -> PendingEvent:
        """Apply ``signed`` to memory and wrap its rows for the committer."""
        raw = encode_canonical(signed)
        if len(raw) > MAX_PDU_BYTES:
            raise TooLarge(f"the event is larger than {MAX_PDU_BYTES} bytes")
        state_key = signed.get("state_key")
        row = EventRow(pos=pos, event_id=event_id, room_id=room_id, type=signed["type"],
                       state_key=state_key, sender=signed["sender"],
                       origin_server_ts=signed["origin_server_ts"], json=raw)
        state_row = None
        if state_key is not None:
            state.apply(dict(signed, event_id=event_id))
            state_row = StateRow(room_id=room_id, type=signed["type"], state_key=state_key,
                                 event_id=event_id, pos=pos)
            if signed["type"] == _MEMBER:
                self._index_member(room_id, state_key, signed["content"].get("membership"), pos)
        self._extremity[room_id] = (event_id, signed["depth"])
        return PendingEvent(pos=pos, event_row=row, state_row=state_row,
                            extremity=(room_id, event_id, signed["depth"]),
                            payload=(room_id, signed, event_id), **extra)

    # -- operations --------------------------------------------------------------------
    async def create_room(self, session: Session, kind: str, name: str, topic: Optional[str],
                          public: bool) -> Tuple[str, int]:
        """Create a room with its initial state; returns (room_id, pos of the last event)."""
        self._check_available()
        if kind == "dm" and public:
            raise BadField("a dm room cannot be public", "public")
        plan = initial_state(session.user_id, kind, name, topic, public, session.pseudonym)
        (ctype, ckey, ccontent), rest = plan[0], plan[1:]
        signed, create_id, pos = self._build(None, session.user_id, ctype, ccontent, ckey)
        room_id = "!" + create_id[1:]
        state = RoomState()
        items = [self._pending(room_id, signed, create_id, pos, state, room_row=RoomRow(
            room_id=room_id, kind=kind, creator=session.user_id, is_public=public,
            created_ts=signed["origin_server_ts"], last_event_id=create_id, depth=1))]
        self.rooms[room_id] = state
        self.kinds[room_id] = kind
        for etype, skey, content in rest:
            signed, event_id, pos = self._build(room_id, session.user_id, etype, content, skey)
            items.append(self._pending(room_id, signed, event_id, pos, state))
        futures = [self.committer.submit(item) for item in items]
        await futures[-1]
        log.info("room.created", room_id=room_id, kind=kind, events=len(items))
        return room_id, pos

    def _state(self, room_id: str) -> RoomState:
        state = self.rooms.get(room_id)
        if state is None:
            raise RoomNotFound(f"no room {room_id} on this server", "room_id")
        return state

    async def set_membership(self, session: Session, room_id: str, membership: str,
                             target: Optional[str] = None) -> Tuple[str, int]:
        """Invite, join or leave; returns (event_id, pos) after commit."""
        self._check_available()
        state = self._state(room_id)
        target = target or session.user_id
        content: Dict[str, Any] = {"membership": membership}
        pseudonym = self._accounts.pseudonym_of(target)
        if pseudonym is None:
            raise NotFound(f"no user {target} on this server", "user_id")
        if membership in ("join", "invite"):
            content["pseudonym"] = pseudonym
        current = state.membership(target)
        if membership == "join" and current == "join":
            return self._current_member_event(state, room_id, target)
        if membership == "leave" and current not in ("join", "invite"):
            raise NotInRoom(f"you are not in room {room_id}", "room_id")
        signed, event_id, pos = self._build(room_id, session.user_id, _MEMBER, content, target)
        await self.committer.submit(self._pending(room_id, signed, event_id, pos, state))
        return event_id, pos

    def _current_member_event(self, state: RoomState, room_id: str, user_id: str) -> Tuple[str, int]:
        event = state.get(_MEMBER, user_id)
        return event["event_id"], self._member_pos[(room_id, user_id)]

    async def send_message(self, session: Session, room_id: str, txn_id: str,
                           body: str) -> Tuple[str, int, bool]:
        """Send a text message, idempotent per (account, txn_id); returns (event_id, pos, duplicate)."""
        key = (session.user_id, txn_id)
        hit = self._txns.get(key)
        if hit is None:
            pending = self._pending_txns.get(key)
            if pending is not None:
                await asyncio.shield(pending)
                hit = self._txns.get(key)
            elif not self._txns_complete:
                row = await self._store.get_txn(session.user_id, txn_id)
                if row is not None:
                    hit = (row.event_id, row.pos)
        if hit is not None:
            return hit[0], hit[1], True
        self._check_available()
        state = self._state(room_id)
        if state.membership(session.user_id) != "join":
            raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
        if len(body) > self.max_body_chars:
            raise TooLarge(f"body is {len(body)} characters; the limit is {self.max_body_chars}", "body")
        content = {"msgtype": "m.text", "body": body}
        signed, event_id, pos = self._build(room_id, session.user_id, "m.room.message", content)
        item = self._pending(room_id, signed, event_id, pos, state, txn_row=TxnRow(
            user_id=session.user_id, txn_id=txn_id, event_id=event_id, pos=pos))
        future = self.committer.submit(item)
        self._pending_txns[key] = future
        try:
            await future
        finally:
            self._pending_txns.pop(key, None)
        self._txns[key] = (event_id, pos)
        if len(self._txns) > self._txn_cache_size:
            self._txns.popitem(last=False)
            self._txns_complete = False
        return event_id, pos, False

    # -- reading -------------------------------------------------------------------------
    def client_event(self, event: Dict[str, Any], event_id: str, pos: int) -> Dict[str, Any]:
        """The client form of a stored event, with the sender's pseudonym."""
        return to_client_event(event, event_id, pos, self._accounts.pseudonym_of(event["sender"]))

    def _row_to_client(self, row: Any) -> Dict[str, Any]:
        return self.client_event(json.loads(row.json), row.event_id, row.pos)

    async def history(self, session: Session, room_id: str, direction: str,
                      from_pos: Optional[int], limit: int) -> Tuple[List[Dict[str, Any]], Optional[int]]:
        """One page of a room's events for a joined member; returns (events, next)."""
        state = self._state(room_id)
        if state.membership(session.user_id) != "join":
            raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
        rows = await self._store.history(room_id, direction, from_pos, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        events = [self._row_to_client(r) for r in rows]
        return events, (rows[-1].pos if more and rows else None)

    async def replay(self, user_id: str, since: int, upto: int, emit: Callable[[Dict[str, Any]], None],
                     page: int = 500) -> None:
        """Emit, in order, every event with since < pos <= upto that the user may see."""
        joined = sorted(self._joined.get(user_id, ()))
        singles = []
        for room_id in self._other_membership.get(user_id, ()):
            pos = self._member_pos.get((room_id, user_id), 0)
            if since < pos <= upto:
                singles.append((pos, room_id))
        singles.sort()
        cursor = since
        while joined:
            rows = await self._store.events_since(joined, cursor, page, upto)
            for row in rows:
                while singles and singles[0][0] < row.pos:
                    self._emit_member(singles.pop(0), user_id, emit)
                emit(self._row_to_client(row))
            if len(rows) < page:
                break
            cursor = rows[-1].pos
        for single in singles:
            self._emit_member(single, user_id, emit)

    def _emit_member(self, single: Tuple[int, str], user_id: str, emit: Callable[[Dict[str, Any]], None]) -> None:
        pos, room_id = single
        event = self.rooms[room_id].get(_MEMBER, user_id)
        clean = {k: v for k, v in event.items() if k != "event_id"}
        emit(self.client_event(clean, event["event_id"], pos))

    def room_summaries(self, user_id: str) -> List[Dict[str, Any]]:
        """The rooms the user is joined or invited to, with name, kind and member count."""
        out = []
        for room_id in sorted(self._joined.get(user_id, set()) | self._other_membership.get(user_id, set())):
            state = self.rooms[room_id]
            membership = state.membership(user_id)
            if membership not in ("join", "invite"):
                continue
            out.append({
                "room_id": room_id, "kind": self.kinds.get(room_id, state.kind),
                "name": state.name or "", "topic": state.topic or "",
                "public": state.join_rule() == "public", "membership": membership,
                "members": len(state.joined_members()),
            })
        return out

    # -- commit callbacks --------------------------------------------------------------------
    def _on_commit(self, batch: List[PendingEvent]) -> None:
        hub = self._hub
        for item in batch:
            room_id, signed, event_id = item.payload
            extra = None
            if signed["type"] == _MEMBER:
                target = signed["state_key"]
                membership = signed["content"].get("membership")
                if membership == "join":
                    hub.join(target, room_id)
                else:
                    extra = target
            if hub.room_subs.get(room_id) or extra is not None:
                hub.publish(item.pos, room_id, self.client_event(signed, event_id, item.pos), extra)
            else:
                hub.delivered_pos = item.pos
            if extra is not None and signed["content"].get("membership") in ("leave", "ban"):
                hub.part(extra, room_id)

    async def _on_failure(self, exc: BaseException) -> None:
        self._broken = True
        log.error("rooms.reload_after_failure", error=repr(exc))
        await self.load()

    def memory_report(self) -> Dict[str, int]:
        """Sizes of the in-memory structures, for metrics and the health endpoint."""
        return {"rooms": len(self.rooms), "txn_cache": len(self._txns),
                "commit_queue": self.committer.queue_length}
