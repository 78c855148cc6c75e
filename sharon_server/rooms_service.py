"""Rooms: create, membership, messages, history and resume over the pure core.

Room state lives in memory (loaded once at start-up from ``current_state``). An event is
built, authorised against that state, hashed and signed, applied to the in-memory state and
given its stream position synchronously, so events of one room are totally ordered without
locks. It is then group-committed; the sender is acknowledged and the event fanned out only
after its transaction has committed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from twisted.logger import Logger

from protocol.canonical_json import decode_stored, encode_canonical
from protocol.errors import (
    BadField, Forbidden, NotFound, NotInRoom, RoomNotFound, TooLarge, Unavailable,
)
from protocol.events import MAX_PDU_BYTES, UnsignedEvent, build_unsigned_event, sign_event, to_client_event
from protocol.signing import SigningKey
from rooms import auth
from rooms.builder import initial_state
from rooms.state import RoomState
from sharon_server.accounts import Session
from sharon_server.event_types import (
    CreateGuard, Derived, EventFilter, EventType, HeldForReview, JoinGuard, ReadGuard, SendContext,
)
from sharon_server.hub import Hub
from sharon_server.persist import GroupCommitter, PendingEvent
from sharon_server.storage.rows import EventRow, RoomRow, StateRow, TxnRow

__all__ = ["RoomService"]

log = Logger(namespace="sharon.rooms")

_MEMBER = "m.room.member"

_Hooks = Tuple[Tuple[Callable[..., Any], ...], Tuple[Callable[..., Any], ...],
               Tuple[Callable[..., Any], ...], EventType]
"""An event type's bound ``prepare``, ``derive`` and ``committed`` hooks, then the type."""


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
        self.pos_floor = 0
        """Highest stream position reserved outside events (``reserve_pos``): never reused."""
        self._last_raw: Tuple[str, Union[bytes, UnsignedEvent]] = ("", b"")
        self._broken = False
        self.committer = GroupCommitter(store.persist_batch, self._on_commit, self._on_failure)
        self.event_types: Dict[str, EventType] = {}
        self.join_guards: List[JoinGuard] = []
        self.create_guards: List[CreateGuard] = []
        self.created_hooks: List[Callable[[Session, str, str, Dict[str, Any]], Any]] = []
        self.observers: List[EventType] = []
        """Hooks that see every event sent through ``send_event`` (after its own type's).
        Registered at install time; ``_hooks_for`` recompiles its dispatch when this grows."""
        self._hooks: Dict[str, _Hooks] = {}
        self._hooks_version = 0
        self.room_list_decorators: List[Callable[[str, List[Dict[str, Any]]], None]] = []
        self.body_limit: Callable[[str, str], int] = lambda room_id, kind: self.max_body_chars
        self.read_guards: List[ReadGuard] = []
        """Let users who are not joined read a room (moderators observing); see event_types."""
        self.event_filters: List[EventFilter] = []
        """Rewrite or drop events per viewer in history and replay (hidden posts)."""
        self.hold_handler: Optional[Callable[[SendContext], Any]] = None
        """``async handler(ctx) -> reply dict``: stores an event an observer held for review."""
        self.replay_extra: Callable[[str], Any] = lambda user_id: ()
        """Rooms a user is not joined to whose events a resume replays too (staff observing)."""
        self.membership_listeners: List[Callable[[str, str, str], None]] = []
        """``f(room_id, user_id, membership)`` after a non-join member event (leave, ban, invite)
        commits, whichever path sent
        it (synchronous and cheap: it runs in the commit callback; e.g. leaving a service ends
        its staff's observations at once)."""
        self.register_event_type(MessageType(self))

    def register_event_type(self, event_type: EventType) -> None:
        """Let clients send ``event_type.etype`` events through ``send_event``."""
        self.event_types[event_type.etype] = event_type

    # -- start-up --------------------------------------------------------------------
    async def load(self) -> None:
        """Rebuild in-memory state from storage: rooms, current state, recent txn IDs."""
        self.rooms.clear(); self.kinds.clear(); self._extremity.clear()
        self._member_pos.clear(); self._joined.clear(); self._other_membership.clear()
        for room in await self._store.load_rooms():
            self.kinds[room.room_id] = room.kind
            self._extremity[room.room_id] = (room.last_event_id, room.depth)
        for room_id, row in await self._store.load_current_state():
            event = decode_stored(row.json)
            event["event_id"] = row.event_id
            state = self.rooms.get(room_id)
            if state is None:
                state = self.rooms[room_id] = RoomState()
            state.apply(event)
            if row.type == _MEMBER:
                self._index_member(room_id, row.state_key, event["content"].get("membership"), row.pos)
        self._next_pos = max(await self._store.max_pos(), self.pos_floor) + 1
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
        # Hashed and identified now; signed on the SQLite writer thread just before it is
        # written (decision 0018): the reactor thread never waits for Ed25519.
        signed, event_id, unsigned = build_unsigned_event(event, self._server_name, self._key)
        self._last_raw = (event_id, unsigned)  # _pending stores these instead of re-encoding
        pos = self._next_pos
        self._next_pos += 1
        return signed, event_id, pos

    def reserve_pos(self) -> int:
        """A stream position no event will take: orders a row that has no event (a notice in
        the notification feed) among events' positions. No event is written at it (a gap)."""
        pos = self._next_pos
        self._next_pos += 1
        self.pos_floor = max(self.pos_floor, pos)
        return pos

    def raise_pos_floor(self, pos: int) -> None:
        """At start-up: positions up to ``pos`` were reserved before (stored by a feature)."""
        self.pos_floor = max(self.pos_floor, pos)
        self._next_pos = max(self._next_pos, pos + 1)

    def _pending(self, room_id: str, signed: Dict[str, Any], event_id: str, pos: int,
                 state: RoomState, **extra: Any) -> PendingEvent:
        """Apply ``signed`` to memory and wrap its rows for the committer."""
        cached_id, raw = self._last_raw
        if cached_id != event_id:  # not the last event built: sign it here
            raw = encode_canonical(sign_event(signed, self._server_name, self._key))
        if (raw.size if type(raw) is UnsignedEvent else len(raw)) > MAX_PDU_BYTES:
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
                          public: bool, options: Optional[Dict[str, Any]] = None) -> Tuple[str, int]:
        """Create a room with its initial state; returns (room_id, pos of the last event).

        ``options`` goes to the create guards, which may refuse, or fill
        ``options["create_content"]`` (extra keys of the create event, e.g. the service) and
        ``options["extra_state"]`` (more initial state events as (type, state_key, content)).
        """
        options = dict(options or {})
        for guard in self.create_guards:
            verdict = guard(session, kind, options)
            if inspect.isawaitable(verdict):
                await verdict
        self._check_available()
        if kind == "dm" and public:
            raise BadField("a dm room cannot be public", "public")
        plan = initial_state(session.user_id, kind, name, topic, public, session.pseudonym)
        plan.extend(options.get("extra_state", ()))
        (ctype, ckey, ccontent), rest = plan[0], plan[1:]
        ccontent = {**options.get("create_content", {}), **ccontent}
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
        for hook in self.created_hooks:
            result = hook(session, room_id, kind, options)
            if inspect.isawaitable(result):
                await result
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
        if membership in ("join", "invite"):
            for guard in self.join_guards:
                verdict = guard(target, room_id, state)
                if inspect.isawaitable(verdict):
                    await verdict
            self._check_available()
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
        """Send a text message (``m.room.message``); see ``send_event``."""
        return await self.send_event(session, room_id, "m.room.message",
                                     {"msgtype": "m.text", "body": body}, txn_id)

    async def _txn_hit(self, key: Tuple[str, str]) -> Optional[Tuple[str, int]]:
        hit = self._txns.get(key)
        if hit is None:
            pending = self._pending_txns.get(key)
            if pending is not None:
                await asyncio.shield(pending)
                hit = self._txns.get(key)
            elif not self._txns_complete:
                row = await self._store.get_txn(key[0], key[1])
                if row is not None:
                    hit = (row.event_id, row.pos)
        return hit

    async def send_event(self, session: Session, room_id: str, etype: str, content: Dict[str, Any],
                         txn_id: Optional[str] = None, state_key: Optional[str] = None,
                         approved: bool = False) -> Tuple[str, int, bool]:
        """Send an event of a registered type; idempotent per (account, txn_id) when given.

        Returns (event_id, pos, duplicate); the reply is sent after the commit. Raises
        ``HeldForReview`` when an observer held the event for review (``approved`` marks
        a moderator releasing a held event, which hold rules must let through).
        """
        key = (session.user_id, txn_id) if txn_id is not None else None
        if key is not None:
            hit = await self._txn_hit(key)
            if hit is not None:
                return hit[0], hit[1], True
        etype_spec = self.event_types.get(etype)
        if etype_spec is None or etype_spec.state_event != (state_key is not None):
            raise BadField(f"event type {etype!r} cannot be sent here", "type")
        self._check_available()
        state = self._state(room_id)
        if state.membership(session.user_id) != "join":
            raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
        kind = self.kinds.get(room_id, "chat")
        if etype_spec.kinds is not None and kind not in etype_spec.kinds:
            raise BadField(f"{etype} events cannot be sent in a {kind} room", "type")
        ctx = SendContext(session=session, room_id=room_id, kind=kind, state=state, etype=etype,
                          content=content, state_key=state_key, txn_id=txn_id, approved=approved)
        prepares, derives, committeds, _ = self._hooks_for(etype_spec)
        awaited = False
        for prepare in prepares:
            prepared = prepare(ctx)
            if prepared is not None and inspect.isawaitable(prepared):
                await prepared
                awaited = True
        if awaited:
            if key is not None:  # a duplicate may have committed while we awaited
                hit = await self._txn_hit(key)
                if hit is not None:
                    return hit[0], hit[1], True
            self._check_available()
            if state.membership(session.user_id) != "join":
                raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
        if ctx.scratch.get("hold") and not approved and self.hold_handler is not None:
            raise HeldForReview(await self.hold_handler(ctx))
        signed, event_id, pos = self._build(room_id, session.user_id, etype, ctx.content, state_key)
        txn_row = None if key is None else TxnRow(
            user_id=session.user_id, txn_id=txn_id, event_id=event_id, pos=pos)
        derived: Derived = []
        for derive in derives:
            rows = derive(ctx, event_id, pos, signed)
            if rows:
                derived.extend(rows)
        item = self._pending(room_id, signed, event_id, pos, state, txn_row=txn_row, extra=derived or None)
        future = self.committer.submit(item)
        if key is None:
            await future
        else:
            self._pending_txns[key] = future
            try:
                await future
            finally:
                self._pending_txns.pop(key, None)
            self._txns[key] = (event_id, pos)
            if len(self._txns) > self._txn_cache_size:
                self._txns.popitem(last=False)
                self._txns_complete = False
        for committed in committeds:
            committed(ctx, event_id, pos, signed)
        return event_id, pos, False

    def _hooks_for(self, etype_spec: EventType) -> "_Hooks":
        """The bound hooks one event of ``etype_spec`` runs: its own type's, then each
        observer's, leaving out hooks an observer does not override (``EventType``'s no-ops
        cost a call each on every message otherwise). Compiled once per event type and
        again whenever an observer is added."""
        if self._hooks_version != len(self.observers):
            self._hooks.clear()
            self._hooks_version = len(self.observers)
        hooks = self._hooks.get(etype_spec.etype)
        if hooks is not None and hooks[3] is etype_spec:
            return hooks
        chain = (etype_spec, *self.observers)

        def bound(name: str) -> Tuple[Callable[..., Any], ...]:
            base = getattr(EventType, name)
            return tuple(getattr(h, name) for h in chain
                         if getattr(getattr(h, name), "__func__", None) is not base)
        hooks = (bound("prepare"), bound("derive"), bound("committed"), etype_spec)
        self._hooks[etype_spec.etype] = hooks
        return hooks

    # -- reading -------------------------------------------------------------------------
    def client_event(self, event: Dict[str, Any], event_id: str, pos: int) -> Dict[str, Any]:
        """The client form of a stored event, with the sender's pseudonym."""
        return to_client_event(event, event_id, pos, self._accounts.pseudonym_of(event["sender"]))

    def _row_to_client(self, row: Any) -> Dict[str, Any]:
        return self.client_event(decode_stored(row.json), row.event_id, row.pos)

    async def history(self, session: Session, room_id: str, direction: str,
                      from_pos: Optional[int], limit: int) -> Tuple[List[Dict[str, Any]], Optional[int]]:
        """One page of a room's events for a joined member; returns (events, next)."""
        state = self._state(room_id)
        if state.membership(session.user_id) != "join" and not self.may_read(session.user_id, room_id):
            raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
        rows = await self._store.history_rows(room_id, direction, from_pos, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        events = [self._row_to_client(r) for r in rows]
        if self.event_filters:
            events = self._filtered(session.user_id, room_id, events)
        return events, (rows[-1].pos if more and rows else None)

    def may_read(self, user_id: str, room_id: str) -> bool:
        """True if a read guard lets ``user_id`` read ``room_id`` without being joined."""
        return any(guard(user_id, room_id) for guard in self.read_guards)

    def _filtered(self, viewer: str, room_id: str, events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        out = []
        for event in events:
            for event_filter in self.event_filters:
                event = event_filter(viewer, room_id, event)
                if event is None:
                    break
            if event is not None:
                out.append(event)
        return out

    async def replay(self, user_id: str, since: int, upto: int, emit: Callable[[Dict[str, Any]], None],
                     page: int = 500) -> None:
        """Emit, in order, every event with since < pos <= upto that the user may see."""
        extra = set(self.replay_extra(user_id))
        joined = sorted(self._joined.get(user_id, set()) | extra)
        singles = []
        for room_id in self._other_membership.get(user_id, ()):
            if room_id in extra:
                continue  # replayed in full below
            pos = self._member_pos.get((room_id, user_id), 0)
            if since < pos <= upto:
                singles.append((pos, room_id))
        singles.sort()
        cursor = since
        while joined:
            rows = await self._store.events_since(joined, cursor, page, upto)
            filters = self.event_filters
            for row in rows:
                while singles and singles[0][0] < row.pos:
                    self._emit_member(singles.pop(0), user_id, emit)
                if filters:
                    for event in self._filtered(user_id, row.room_id, [self._row_to_client(row)]):
                        emit(event)
                else:
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
            if extra is not None and self.membership_listeners:
                self._tell_membership(room_id, extra, signed["content"].get("membership"))

    def _tell_membership(self, room_id: str, user_id: str, membership: Any) -> None:
        for listener in self.membership_listeners:
            try:
                listener(room_id, user_id, membership)
            except Exception:  # noqa: BLE001 - the event is committed; a listener cannot undo it
                log.failure("rooms.membership_listener_failed", room_id=room_id)

    async def _on_failure(self, exc: BaseException) -> None:
        self._broken = True
        log.error("rooms.reload_after_failure", error=repr(exc))
        await self.load()

    def memory_report(self) -> Dict[str, int]:
        """Sizes of the in-memory structures, for metrics and the health endpoint."""
        return {"rooms": len(self.rooms), "txn_cache": len(self._txns),
                "commit_queue": self.committer.queue_length}


class MessageType(EventType):
    """``m.room.message``: a text message; the body limit depends on the room's kind and service."""

    etype = "m.room.message"

    def __init__(self, rooms: RoomService) -> None:
        self._rooms = rooms

    def prepare(self, ctx: SendContext) -> None:
        """Check the body against the room's character limit."""
        body = ctx.content.get("body")
        if type(body) is not str or not body:
            raise BadField("body must be a non-empty string", "body")
        limit = self._rooms.body_limit(ctx.room_id, ctx.kind)
        if len(body) > limit:
            raise TooLarge(f"body is {len(body)} characters; the limit here is {limit}", "body")
