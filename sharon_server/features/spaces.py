"""Services (spaces): admin-created rooms of kind ``space`` whose membership is the key to
their rooms, with per-service roles and settings (character limits, kinds, trending).

Publishes ``ctx.services``, the ``ServiceDirectory`` later features use to ask which
service a room belongs to, who is a member or staff, and what the settings are.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

import sqlalchemy as sa
from twisted.logger import Logger

from protocol import spaces as P
from protocol.errors import BadField, Forbidden, NotFound, RoomNotFound
from protocol.events import SPACE_KIND
from rooms.builder import default_power_levels
from rooms.kinds import POWER_LEVELS
from sharon_server.accounts import Session
from sharon_server.event_types import EventType, SendContext
from sharon_server.ops import register_handlers
from sharon_server.storage.schema_spaces import server_admins

__all__ = ["ServiceDirectory", "install", "grant_admin", "revoke_admin", "list_admins"]

log = Logger(namespace="sharon.spaces")

MAX_LEVEL_SYNC_ROOMS = 2000
"""A role change rewrites the power levels of at most this many rooms of the service."""

_INTERNAL = object()
"""Marks power-levels content built by this module; clients cannot send the event type."""


class _PowerLevelsType(EventType):
    """``m.room.power_levels``, sendable only by the server's own role-to-level sync."""

    etype = POWER_LEVELS
    state_event = True

    def prepare(self, ctx: SendContext) -> None:
        if ctx.content.pop("_sharon_internal", None) is not _INTERNAL:
            raise Forbidden("power levels follow service roles; change the role instead", "type")


def _may_set(level: int, target: str, sender: str, old: int, new: int) -> bool:
    """Rule H of the auth rules for one user's level: may ``sender`` (at ``level``) do it?"""
    return new <= level and (target == sender or old < level)


class _ServiceState(EventType):
    """A service state event the server sends on a staff member's behalf (not a client op)."""

    kinds = frozenset({SPACE_KIND})
    state_event = True

    def __init__(self, etype: str) -> None:
        self.etype = etype


class ServiceDirectory:
    """Answers service questions from in-memory room state (no I/O on the hot path)."""

    def __init__(self, rooms: Any, db: Any, now_ms: Any) -> None:
        self._rooms = rooms
        self._db = db
        self._now_ms = now_ms
        self.admins: Set[str] = set()
        self.on_admins_changed: Optional[Callable[[Set[str], Set[str]], Awaitable[None]]] = None
        """``async (old, new)``: list granted admins at 100 (and revoked ones back at their
        role's level) in every service's power levels; set by ``install``."""
        self._levels_for: Optional[Set[str]] = None  # the admin set the power levels reflect
        self._admin_lock = asyncio.Lock()
        self._service_of: Dict[str, Optional[str]] = {}
        """Room → its service, from the room's create event, which never changes: one entry
        per room that exists (rooms are never removed), asked twice for every message."""

    # -- admins -----------------------------------------------------------------------
    async def refresh_admins(self) -> None:
        """Re-read the server admins (granted from the shell with ``sharon-server admin``);
        on a change, bring the services' power levels in line before returning, so the
        admin's next action passes the auth rules."""
        async with self._db.read_engine.connect() as conn:
            rows = await conn.execute(sa.select(server_admins.c.user_id))
            admins = {r[0] for r in rows}
        if admins == self.admins and not self._admin_lock.locked():
            return
        async with self._admin_lock:
            self.admins = admins
            done = self._levels_for
            if done is None or done == admins or self.on_admins_changed is None:
                return
            self._levels_for = set(admins)
            await self.on_admins_changed(done, admins)

    def level_of(self, service_id: str, user_id: str) -> int:
        """The power level ``user_id`` should have in the service's rooms: 100 for a server
        admin (member or not), else their role's level (0 when not a member)."""
        if user_id in self.admins:
            return P.role_level("admin")
        return P.role_level(self.role(service_id, user_id))

    def is_admin(self, user_id: str) -> bool:
        """True for a server administrator."""
        return user_id in self.admins

    # -- lookups ------------------------------------------------------------------------
    def is_service(self, room_id: str) -> bool:
        """True if ``room_id`` is a service's own room."""
        return self._rooms.kinds.get(room_id) == SPACE_KIND

    def service_of(self, room_id: str) -> Optional[str]:
        """The service a room belongs to, or None (rooms outside any service)."""
        try:
            return self._service_of[room_id]
        except KeyError:
            pass
        state = self._rooms.rooms.get(room_id)
        create = None if state is None else state.create_event
        if create is None:
            return None
        service = create["content"].get("service")
        service = self._service_of[room_id] = service if type(service) is str else None
        return service

    def is_member(self, service_id: str, user_id: str) -> bool:
        """True if the user is joined to the service."""
        state = self._rooms.rooms.get(service_id)
        return state is not None and state.membership(user_id) == "join"

    def role(self, service_id: str, user_id: str) -> Optional[str]:
        """The user's role in the service (None if not a member)."""
        if not self.is_member(service_id, user_id):
            return None
        event = self._rooms.rooms[service_id].get(P.ROLE, P.role_key(user_id))
        role = event["content"].get("role") if event else None
        return role if role in P.ROLES else "member"

    def is_staff(self, service_id: Optional[str], user_id: str) -> bool:
        """Clinicians, moderators and admins of the service, and server admins."""
        if self.is_admin(user_id):
            return True
        return service_id is not None and self.role(service_id, user_id) in P.STAFF_ROLES

    def level_map(self, service_id: str) -> Dict[str, int]:
        """Every joined member of the service whose role has a level above 0, at that level."""
        state = self._rooms.rooms.get(service_id)
        if state is None:
            return {}
        out = {}
        for (etype, key), event in state.items():
            if etype == P.ROLE and key.startswith("_"):
                user_id = key[1:]
                level = P.role_level(self.role(service_id, user_id))
                if level > 0:
                    out[user_id] = level
        for user_id in self.admins:  # server admins act in every service (not members)
            out[user_id] = P.role_level("admin")
        return out

    def services_of(self, user_id: str) -> List[str]:
        """The services the user is joined to."""
        return sorted(r for r in self._rooms.joined_rooms(user_id) if self.is_service(r))

    def share_service(self, a: str, b: str) -> bool:
        """True if two users are members of at least one common service."""
        return bool(set(self.services_of(a)) & set(self.services_of(b)))

    def settings(self, service_id: Optional[str]) -> Dict[str, Any]:
        """The service's settings (defaults for rooms outside any service)."""
        state = self._rooms.rooms.get(service_id) if service_id else None
        event = state.get(P.SETTINGS, "") if state is not None else None
        if event is None:
            return P.DEFAULT_SETTINGS
        content = event["content"]
        if len(content) < len(P.DEFAULT_SETTINGS):  # settings added since it was written
            return {**P.DEFAULT_SETTINGS, **content}
        return content

    def char_limit(self, room_id: str, kind: str) -> int:
        """The body limit for ``kind`` rooms of the room's service (server default otherwise)."""
        service = self.service_of(room_id)
        if service is None:
            return self._rooms.max_body_chars
        return self.settings(service)["char_limits"].get(kind, self._rooms.max_body_chars)

    def rooms_of(self, service_id: str) -> List[str]:
        """The rooms linked to the service, in creation order."""
        state = self._rooms.rooms.get(service_id)
        if state is None:
            return []
        children = [(k[1], e) for k, e in state.items() if k[0] == P.CHILD]
        return [room_id for room_id, _ in sorted(children, key=lambda c: c[1]["origin_server_ts"])
                if room_id in self._rooms.rooms]

    def require_service(self, service_id: str) -> None:
        """RoomNotFound unless ``service_id`` names a service."""
        if not self.is_service(service_id):
            raise RoomNotFound(f"no service {service_id}", "service_id")


def _system_session(user_id: str, accounts: Any) -> Session:
    return Session(user_id, "", accounts.pseudonym_of(user_id) or "", b"")


def install(ctx: Any) -> None:
    """Wire services into the room service and register their operations."""
    rooms, accounts = ctx.rooms, ctx.accounts
    directory = ServiceDirectory(rooms, ctx.db, ctx.now_ms)
    ctx.services = directory
    for etype in (P.SETTINGS, P.ROLE, P.CHILD):
        rooms.register_event_type(_ServiceState(etype))
    rooms.register_event_type(_PowerLevelsType())
    rooms.body_limit = directory.char_limit
    ctx.add_loader(directory.refresh_admins)

    def join_guard(user_id: str, room_id: str, state: Any) -> None:
        service = directory.service_of(room_id)
        if service is not None and not directory.is_member(service, user_id) and not directory.is_admin(user_id):
            raise Forbidden("only members of this room's service can join it")

    def create_guard(session: Session, kind: str, options: Dict[str, Any]) -> None:
        service = options.get("service_id")
        if service is None:
            return
        directory.require_service(service)
        if not directory.is_member(service, session.user_id):
            raise Forbidden("only members of a service can create rooms in it")
        if kind not in directory.settings(service)["kinds"]:
            raise BadField(f"this service does not have {kind} rooms", "kind")
        options.setdefault("create_content", {})["service"] = service

    def _steward(service_id: str) -> Session:
        # Service state is sent as the service's creator (power level 100) only for server
        # admins who are not members of the service; staff send as themselves (_actor).
        return _system_session(rooms.rooms[service_id].creator, accounts)

    def _actor(service_id: str, session: Session, etype: str) -> Session:
        """The acting staff member if joined with the power to send ``etype``, else the steward."""
        state = rooms.rooms[service_id]
        if state.is_joined(session.user_id) and \
                state.user_level(session.user_id) >= state.power_levels().event_level(etype, True):
            return session
        return _steward(service_id)

    def staff_levels_guard(session: Session, kind: str, options: Dict[str, Any]) -> None:
        """New rooms start with the service's staff and peers at their role levels."""
        if kind == SPACE_KIND:
            levels: Dict[str, int] = {}
            events = P.SERVICE_EVENT_LEVELS
        else:
            service = options.get("service_id")
            if service is None or kind == "dm":
                return
            levels, events = directory.level_map(service), P.ROOM_EVENT_LEVELS
        levels.pop(session.user_id, None)  # the creator keeps the level the room gives them
        extra = list(options.get("extra_state", ()))
        index = next((i for i in range(len(extra) - 1, -1, -1) if extra[i][0] == POWER_LEVELS), None)
        base = extra[index][2] if index is not None else default_power_levels(session.user_id, kind)
        triple = (POWER_LEVELS, "", P.with_role_levels(base, levels, events))
        if index is None:
            extra.append(triple)
        else:
            extra[index] = triple
        options["extra_state"] = extra

    async def add_staff_levels_guard() -> None:
        # Appended once every feature is installed, so it runs after their create guards
        # (the forum guard replaces the power levels) and has the last word on levels.
        if staff_levels_guard not in rooms.create_guards:
            rooms.create_guards.append(staff_levels_guard)

    ctx.add_loader(add_staff_levels_guard)

    def _level_sender(state: Any, actor: Optional[str], target: str, old: int, new: int) -> Optional[str]:
        joined = state.joined_members()
        order = sorted(joined, key=lambda u: -state.user_level(u))
        if actor in joined:
            order.insert(0, actor)
        needed = state.power_levels().event_level(POWER_LEVELS, True)
        for user_id in order:
            level = state.user_level(user_id)
            if level >= needed and _may_set(level, target, user_id, old, new):
                return user_id
        return None

    async def sync_levels(service_id: str, target: str, actor: Optional[str]) -> int:
        """Set ``target``'s level to their role's in the service room and its rooms; returns
        how many rooms changed. A room's creator keeps their own level in it."""
        level = directory.level_of(service_id, target)
        changed = 0
        room_ids = [service_id] + directory.rooms_of(service_id)
        if len(room_ids) > MAX_LEVEL_SYNC_ROOMS:
            log.warn("service.level_sync_capped", service_id=service_id, rooms=len(room_ids))
            room_ids = room_ids[:MAX_LEVEL_SYNC_ROOMS]
        for room_id in room_ids:
            state = rooms.rooms.get(room_id)
            if state is None or rooms.kinds.get(room_id) == "dm" or state.creator == target:
                continue
            levels = state.power_levels()
            old = levels.user_level(target)
            if old == level or levels.content is None:
                continue
            sender = _level_sender(state, actor, target, old, level)
            if sender is None:
                log.warn("service.level_sync_skipped", service_id=service_id, room_id=room_id)
                continue
            content = P.with_role_levels(dict(levels.content), {target: level})
            content["_sharon_internal"] = _INTERNAL
            await rooms.send_event(_system_session(sender, accounts), room_id, POWER_LEVELS, content, state_key="")
            changed += 1
        log.info("service.levels_synced", service_id=service_id, rooms=changed)
        return changed

    async def set_role(session: Session, service_id: str, target: str, role: str) -> Tuple[str, int]:
        """Join ``target`` to the service if needed, record ``role`` and sync power levels.

        The caller has checked ``session``'s rights; events are sent as ``session`` when it
        is joined to the service with the power, else as the steward (server admins)."""
        state = rooms.rooms[service_id]
        inviter = _actor(service_id, session, P.ROLE)
        if state.membership(target) != "join":
            if state.membership(target) != "invite":
                await rooms.set_membership(inviter, service_id, "invite", target)
            await rooms.set_membership(_system_session(target, accounts), service_id, "join")
        event_id, pos, _ = await rooms.send_event(inviter, service_id, P.ROLE, {"role": role},
                                                  state_key=P.role_key(target))
        await sync_levels(service_id, target, session.user_id)
        return event_id, pos

    async def admins_changed(old: Set[str], new: Set[str]) -> None:
        """List granted server admins at 100 in every service's rooms; revoked ones go back
        to their role's level (bounded per service by MAX_LEVEL_SYNC_ROOMS)."""
        changed = sorted(old ^ new)
        for service_id in sorted(r for r, k in rooms.kinds.items() if k == SPACE_KIND):
            for user_id in changed:
                try:
                    await sync_levels(service_id, user_id, None)
                except Exception:  # noqa: BLE001 - one room's refusal must not stop the others
                    log.failure("service.admin_levels_failed", service_id=service_id)
        log.info("service.admin_levels_synced", changed=len(changed))

    async def reconcile_admin_levels() -> None:
        """At start-up: admins granted or revoked while the server was down."""
        await directory.refresh_admins()
        admins = set(directory.admins)
        stale: Set[str] = set()
        for service_id in sorted(r for r, k in rooms.kinds.items() if k == SPACE_KIND):
            state = rooms.rooms[service_id]
            users = (state.power_levels().content or {}).get("users") or {}
            for user_id in set(users) | admins:
                if user_id != state.creator and state.user_level(user_id) != directory.level_of(service_id, user_id):
                    stale.add(user_id)
        directory._levels_for = admins  # noqa: SLF001 - this module owns the directory
        directory.on_admins_changed = admins_changed
        if stale:
            await admins_changed(set(), stale)

    ctx.add_loader(reconcile_admin_levels)

    ctx.extras["spaces"] = {"set_role": set_role, "sync_levels": sync_levels, "steward": _steward,
                            "actor": _actor, "system_session": lambda u: _system_session(u, accounts)}

    async def link_child(session: Session, room_id: str, kind: str, options: Dict[str, Any]) -> None:
        service = options.get("service_id")
        if service is not None:
            await rooms.send_event(_steward(service), service, P.CHILD, {"kind": kind}, state_key=room_id)

    class _ServiceTagger(EventType):
        """Puts the room's service in ``ctx.scratch["service"]`` for later observers."""

        def prepare(self, ctx: Any) -> None:
            ctx.scratch["service"] = directory.service_of(ctx.room_id)

    rooms.observers.insert(0, _ServiceTagger())
    rooms.join_guards.append(join_guard)
    rooms.create_guards.append(create_guard)
    rooms.created_hooks.append(link_child)

    async def _audit(actor: str, action: str, **fields: Any) -> None:
        if ctx.audit is not None:
            await ctx.audit.append(actor, action, **fields)

    async def create_service(conn: Any, req: P.CreateService) -> Dict[str, Any]:
        session = conn.require_session()
        await directory.refresh_admins()
        if not directory.is_admin(session.user_id):
            raise Forbidden("only server admins can create services")
        settings = P.validate_settings(req.settings or {})
        service_id, _ = await rooms.create_room(session, SPACE_KIND, req.name, req.topic, False)
        await rooms.send_event(session, service_id, P.SETTINGS, settings, state_key="")
        await rooms.send_event(session, service_id, P.ROLE, {"role": "admin"}, state_key=P.role_key(session.user_id))
        log.info("service.created", service_id=service_id)
        await _audit(session.user_id, "service.create", service=service_id, details={"name": req.name})
        return {"service_id": service_id, "settings": settings}

    def summary(service_id: str, user_id: str) -> Dict[str, Any]:
        state = rooms.rooms[service_id]
        return {"service_id": service_id, "name": state.name or "", "topic": state.topic or "",
                "role": directory.role(service_id, user_id), "settings": directory.settings(service_id),
                "rooms": len(directory.rooms_of(service_id))}

    async def list_services(conn: Any, req: P.Services) -> Dict[str, Any]:
        session = conn.require_session()
        if directory.is_admin(session.user_id):
            ids = sorted(r for r, k in rooms.kinds.items() if k == SPACE_KIND)
        else:
            ids = directory.services_of(session.user_id)
        return {"services": [summary(s, session.user_id) for s in ids]}

    def visible_rooms(service_id: str, user_id: str) -> List[Dict[str, Any]]:
        out = []
        for room_id in directory.rooms_of(service_id):
            state = rooms.rooms[room_id]
            membership = state.membership(user_id)
            public = state.join_rule() == "public"
            if not public and membership not in ("join", "invite"):
                continue
            out.append({"room_id": room_id, "kind": rooms.kinds.get(room_id), "name": state.name or "",
                        "topic": state.topic or "", "public": public, "membership": membership,
                        "members": len(state.joined_members())})
        return out

    async def service_rooms(conn: Any, req: P.ServiceRooms) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        directory.require_service(service_id)
        if not directory.is_member(service_id, session.user_id) and not directory.is_admin(session.user_id):
            raise Forbidden("you are not a member of this service")
        listed = visible_rooms(service_id, session.user_id)
        for hook in ctx.extras.get("room_list_decorators", []):
            hook(session.user_id, listed)
        return {"rooms": listed}

    async def add_member(conn: Any, req: P.ServiceAddMember) -> Dict[str, Any]:
        session = conn.require_session()
        service_id, target = str(req.service_id), str(req.user_id)
        directory.require_service(service_id)
        await directory.refresh_admins()
        if not directory.is_staff(service_id, session.user_id):
            raise Forbidden("only staff of this service can add members")
        if req.role in P.STAFF_ROLES and not directory.is_admin(session.user_id) \
                and directory.role(service_id, session.user_id) != "admin":
            raise Forbidden("only admins can give staff roles")
        if accounts.pseudonym_of(target) is None:
            raise NotFound(f"no user {target} on this server", "user_id")
        current = directory.role(service_id, target)
        if current in P.STAFF_ROLES and not directory.is_admin(session.user_id) \
                and directory.role(service_id, session.user_id) != "admin":
            raise Forbidden("only admins can change a staff member's role", "user_id")
        event_id, pos = await set_role(session, service_id, target, req.role)
        log.info("service.member_added", service_id=service_id, user_id=target, role=req.role)
        await _audit(session.user_id, "service.add_member", member=target, service=service_id,
                     details={"role": req.role})
        return {"event_id": event_id, "pos": pos}

    async def change_settings(conn: Any, req: P.ServiceSettings) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        directory.require_service(service_id)
        await directory.refresh_admins()
        if not directory.is_admin(session.user_id) and directory.role(service_id, session.user_id) != "admin":
            raise Forbidden("only admins can change a service's settings")
        settings = P.validate_settings(req.settings, directory.settings(service_id))
        await rooms.send_event(_actor(service_id, session, P.SETTINGS), service_id, P.SETTINGS, settings,
                               state_key="")
        await _audit(session.user_id, "service.settings", service=service_id, details={"changed": req.settings})
        return {"settings": settings}

    register_handlers({
        P.CreateService: create_service, P.Services: list_services, P.ServiceRooms: service_rooms,
        P.ServiceAddMember: add_member, P.ServiceSettings: change_settings,
    })


async def grant_admin(db: Any, user_id: str, by: str, now_ms: int) -> bool:
    """Make ``user_id`` a server admin; False if it already was."""
    async with db.engine.begin() as conn:
        exists = (await conn.execute(sa.select(server_admins.c.user_id)
                                     .where(server_admins.c.user_id == user_id))).first()
        if exists:
            return False
        await conn.execute(server_admins.insert().values(user_id=user_id, granted_ts=now_ms, granted_by=by))
    return True


async def revoke_admin(db: Any, user_id: str) -> bool:
    """Remove ``user_id`` from the server admins; False if it was not one."""
    async with db.engine.begin() as conn:
        result = await conn.execute(server_admins.delete().where(server_admins.c.user_id == user_id))
    return bool(result.rowcount)


async def list_admins(db: Any) -> List[Dict[str, Any]]:
    """Every server admin with when and by whom they were granted."""
    async with db.read_engine.connect() as conn:
        rows = await conn.execute(sa.select(*server_admins.c).order_by(server_admins.c.granted_ts))
        return [dict(r._mapping) for r in rows]
