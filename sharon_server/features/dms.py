"""Chat and DMs: one-to-one rooms, typing indicators, read markers, unread counts, limits.

A DM is a room of kind ``dm`` created only through ``create_dm``. Its create event lists
the two parties (``dm_users``) and, when they share one, the service it belongs to (so that
service's ``char_limits["dm"]`` applies). The invitee is invited and joined at once, like a
1:1 chat app; either may leave. A join guard keeps everyone else out (joins and invites).
DMs are not linked as children of the service: they are listed by ``rooms``, never by
``service_rooms``.

Rules (docs/protocol.md §8.1): the two users must share the given service (or any service);
member↔member only where the service's ``member_dms`` setting is true; a DM with staff of
the shared service (clinician, moderator, admin) or with a server admin is always allowed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from twisted.logger import Logger

from protocol import dms as P
from protocol.errors import BadField, Forbidden, NotFound, NotInRoom, RoomNotFound
from protocol.events import CLIENT_ROOM_KINDS
from sharon_server.accounts import Session
from sharon_server.features.dms_presence import ReadState, TypingTracker
from sharon_server.ops import register_handlers

__all__ = ["install", "DmDirectory", "DEFAULT_TYPING_TTL_MS"]

log = Logger(namespace="sharon.dms")

DM_KIND = "dm"
DEFAULT_TYPING_TTL_MS = 10_000
"""How long a typing state lasts without a refresh (config ``typing_ttl_ms``,
environment ``SHARON_TYPING_TTL_MS``)."""

Pair = FrozenSet[str]


def _typing_ttl_ms(config: Any) -> int:
    value = getattr(config, "typing_ttl_ms", None)
    if value is None:
        value = os.environ.get("SHARON_TYPING_TTL_MS")
    try:
        ttl = int(value) if value is not None else DEFAULT_TYPING_TTL_MS
    except ValueError:
        ttl = DEFAULT_TYPING_TTL_MS
    return max(50, min(ttl, 120_000))


def _as(user_id: str, accounts: Any) -> Session:
    """A session acting for ``user_id`` after this module has checked the rules."""
    return Session(user_id, "", accounts.pseudonym_of(user_id) or "", b"")


class DmDirectory:
    """The DM room of each pair of users, from in-memory room state."""

    def __init__(self, rooms: Any) -> None:
        self._rooms = rooms
        self.by_pair: Dict[Pair, str] = {}
        self.creating: Dict[Pair, "asyncio.Future[str]"] = {}
        """Pairs whose DM is being opened right now (a second request waits for the first)."""

    def parties(self, room_id: str) -> Optional[Tuple[str, str]]:
        """The two users of a DM room (None if ``room_id`` is not a DM)."""
        if self._rooms.kinds.get(room_id) != DM_KIND:
            return None
        state = self._rooms.rooms.get(room_id)
        create = state.create_event if state is not None else None
        users = create["content"].get(P.DM_USERS) if create else None
        if type(users) is not list or len(users) != 2:
            return None
        return users[0], users[1]

    def load(self) -> None:
        """Index every DM by its pair; the newest room of a pair wins."""
        self.by_pair = {}
        for room_id, kind in self._rooms.kinds.items():
            if kind != DM_KIND:
                continue
            users = self.parties(room_id)
            if users is None:
                continue
            pair = frozenset(users)
            best = self.by_pair.get(pair)
            if best is None or self._created(room_id) >= self._created(best):
                self.by_pair[pair] = room_id

    def _created(self, room_id: str) -> int:
        return self._rooms.rooms[room_id].create_event["origin_server_ts"]


def install(ctx: Any) -> None:
    """Wire DMs, typing, read markers, unread counts and limits into the server."""
    rooms, accounts, hub = ctx.rooms, ctx.accounts, ctx.hub
    services = ctx.services
    dms = DmDirectory(rooms)
    typing = TypingTracker(hub, accounts.pseudonym_of, _typing_ttl_ms(ctx.config) / 1000.0)
    reads = ReadState(rooms, ctx.db, hub, ctx.now_ms, typing)
    ctx.extras["dms"] = {"directory": dms, "typing": typing, "reads": reads}
    rooms.observers.append(reads)

    def name_dms(user_id: str, summaries: List[Dict[str, Any]]) -> None:
        """A DM has no name: tell the client who the other party is (ID and pseudonym)."""
        for summary in summaries:
            users = dms.parties(summary.get("room_id", ""))
            if users is not None:
                other = users[1] if users[0] == user_id else users[0]
                summary["dm_user_id"] = other
                summary["dm_pseudonym"] = accounts.pseudonym_of(other) or ""

    decorators = ctx.extras.setdefault("room_list_decorators", [])
    core_list = getattr(rooms, "room_list_decorators", None)
    for hook in (reads.decorate, name_dms):
        decorators.append(hook)
        if isinstance(core_list, list) and core_list is not decorators:
            core_list.append(hook)

    async def load() -> None:
        dms.load()
        await reads.load()

    ctx.add_loader(load)

    # -- guards ---------------------------------------------------------------------------
    def join_guard(user_id: str, room_id: str, state: Any) -> None:
        if rooms.kinds.get(room_id) != DM_KIND:
            return
        users = dms.parties(room_id)
        if users is None:  # a dm room from before create_dm: at most two people, whoever they are
            present = {u for u in state.joined_members()} | {
                k[1] for k, e in state.items()
                if k[0] == "m.room.member" and e["content"].get("membership") == "invite"}
            allowed = user_id in present or len(present) < 2
        else:
            allowed = user_id in users
        if not allowed:
            raise Forbidden("a DM has exactly two people; nobody else can join or be invited")

    def create_guard(session: Session, kind: str, options: Dict[str, Any]) -> None:
        if kind == DM_KIND and "_dm_users" not in options:
            raise BadField("DMs are opened with create_dm, not create_room", "kind")

    rooms.join_guards.append(join_guard)
    rooms.join_guards.append(reads.on_entry)
    rooms.create_guards.append(create_guard)

    # -- the rules ------------------------------------------------------------------------
    def is_admin(user_id: str) -> bool:
        return services is not None and services.is_admin(user_id)

    def choose_service(me: str, other: str, service_id: Optional[str]) -> Optional[str]:
        """The service the DM belongs to; raises Forbidden when the rules say no."""
        if services is None:
            raise Forbidden("DMs need services, and this server has none")
        if service_id is not None:
            services.require_service(service_id)
            candidates = [service_id] if (services.is_member(service_id, me)
                                          and services.is_member(service_id, other)) else []
        else:
            candidates = sorted(set(services.services_of(me)) & set(services.services_of(other)))
        if not candidates:
            if is_admin(me) or is_admin(other):
                return service_id
            where = "that service" if service_id is not None else "a service"
            raise Forbidden(f"you and {other} do not share {where}")
        for s in candidates:  # staff first: a DM with staff is always allowed
            if services.is_staff(s, me) or services.is_staff(s, other):
                return s
        for s in candidates:
            if services.settings(s).get("member_dms", True):
                return s
        raise Forbidden("this service does not allow direct messages between members; "
                        "you can message its staff")

    async def ensure_joined(room_id: str, users: Tuple[str, str]) -> bool:
        """Bring both parties back into an existing DM; False if that cannot be done."""
        state = rooms.rooms.get(room_id)
        if state is None:
            return False
        if any(state.membership(u) == "ban" for u in users):
            # a ban in a DM means "do not contact me": never route around it with a new room
            raise Forbidden("you cannot open a DM with this person")
        missing = [u for u in users if state.membership(u) != "join"]
        if not missing:
            return True
        creator = state.creator
        if state.membership(creator) != "join":
            return False
        for user_id in missing:
            if state.membership(user_id) != "invite":
                await rooms.set_membership(_as(creator, accounts), room_id, "invite", user_id)
            await rooms.set_membership(_as(user_id, accounts), room_id, "join")
        return True

    async def open_dm(session: Session, other: str, service_id: Optional[str]) -> Tuple[str, bool]:
        me = session.user_id
        pair = frozenset((me, other))
        existing = dms.by_pair.get(pair)
        state = rooms.rooms.get(existing) if existing is not None else None
        if state is not None and all(state.membership(u) == "join" for u in pair):
            return existing, False  # an ongoing conversation stays open whatever changed since
        service = choose_service(me, other, service_id)  # bringing someone (back) in: the rules apply
        if existing is not None and await ensure_joined(existing, (me, other)):
            return existing, False
        users = sorted(pair)
        create_content: Dict[str, Any] = {P.DM_USERS: users}
        if service is not None:
            create_content["service"] = service
        options = {"_dm_users": users, "create_content": create_content}
        room_id, _ = await rooms.create_room(session, DM_KIND, "", None, False, options)
        dms.by_pair[pair] = room_id
        await rooms.set_membership(session, room_id, "invite", other)
        await rooms.set_membership(_as(other, accounts), room_id, "join")
        log.info("dm.created", room_id=room_id, service_id=service)
        return room_id, True

    # -- handlers -------------------------------------------------------------------------
    async def create_dm(conn: Any, req: P.CreateDm) -> Dict[str, Any]:
        session = conn.require_session()
        other = str(req.user_id)
        if other == session.user_id:
            raise BadField("you cannot open a DM with yourself", "user_id")
        if accounts.pseudonym_of(other) is None:
            raise NotFound(f"no user {other} on this server", "user_id")
        if services is not None:
            await services.refresh_admins()  # admins are granted from the shell at any time
        service_id = str(req.service_id) if req.service_id is not None else None
        pair = frozenset((session.user_id, other))
        pending = dms.creating.get(pair)
        if pending is not None:  # the same pair is being opened right now: share the result
            await asyncio.shield(pending)
        future: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()
        dms.creating[pair] = future
        try:
            room_id, created = await open_dm(session, other, service_id)
            future.set_result(room_id)
        except BaseException:
            future.set_result("")
            raise
        finally:
            if dms.creating.get(pair) is future:
                del dms.creating[pair]
        return {"room_id": room_id, "created": created, "user_id": other,
                "pseudonym": accounts.pseudonym_of(other) or ""}

    def require_joined(session: Session, room_id: str) -> Any:
        state = rooms.rooms.get(room_id)
        if state is None:
            raise RoomNotFound(f"no room {room_id} on this server", "room_id")
        if state.membership(session.user_id) != "join":
            raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
        return state

    async def typing_op(conn: Any, req: P.Typing) -> Dict[str, Any]:
        session = conn.require_session()
        room_id = str(req.room_id)
        require_joined(session, room_id)
        typing.set(room_id, session.user_id, req.typing)
        return {"timeout_ms": int(typing.ttl_s * 1000)}

    async def mark_read(conn: Any, req: P.MarkRead) -> Dict[str, Any]:
        session = conn.require_session()
        room_id = str(req.room_id)
        require_joined(session, room_id)
        pos = await reads.mark(session.user_id, room_id, req.pos, conn)
        return {"room_id": room_id, "pos": pos, "unread": reads.unread(session.user_id, room_id)}

    async def unread(conn: Any, req: P.Unread) -> Dict[str, Any]:
        session = conn.require_session()
        if req.room_ids is None:
            room_ids = sorted(rooms.joined_rooms(session.user_id))
        else:
            room_ids = [str(r) for r in req.room_ids]
            for room_id in room_ids:
                if rooms.rooms.get(room_id) is None or rooms.rooms[room_id].membership(session.user_id) != "join":
                    raise NotInRoom(f"you are not joined to room {room_id}", "room_ids")
        return {"unread": {r: reads.unread(session.user_id, r) for r in room_ids},
                "read_pos": {r: reads.markers.get((session.user_id, r), 0) for r in room_ids}}

    def char_limits(room_id: Optional[str]) -> Dict[str, int]:
        default = rooms.max_body_chars
        service = services.service_of(room_id) if (services is not None and room_id) else None
        if service is None:
            return {k: default for k in CLIENT_ROOM_KINDS}
        configured = services.settings(service).get("char_limits", {})
        return {k: configured.get(k, default) for k in CLIENT_ROOM_KINDS}

    async def limits(conn: Any, req: P.Limits) -> Dict[str, Any]:
        session = conn.require_session()
        if req.room_id is None:
            return {"max_body_chars": rooms.max_body_chars, "char_limits": char_limits(None)}
        room_id = str(req.room_id)
        state = rooms.rooms.get(room_id)
        if state is None:
            raise RoomNotFound(f"no room {room_id} on this server", "room_id")
        if state.membership(session.user_id) not in ("join", "invite") and state.join_rule() != "public":
            raise NotInRoom(f"you are not in room {room_id}", "room_id")
        kind = rooms.kinds.get(room_id, "chat")
        out: Dict[str, Any] = {"room_id": room_id, "kind": kind,
                               "max_body_chars": rooms.body_limit(room_id, kind),
                               "char_limits": char_limits(room_id)}
        service = services.service_of(room_id) if services is not None else None
        if service is not None:
            out["service_id"] = service
        return out

    register_handlers({
        P.CreateDm: create_dm, P.Typing: typing_op, P.MarkRead: mark_read,
        P.Unread: unread, P.Limits: limits,
    })
