"""Staff in any room (#5): observe or join as staff, member cards, the moderation notice.

Who may moderate a room: the staff of the room's service (clinicians, moderators and
admins: exactly ``ctx.services.is_staff(service, user)``, so moderation filters that ask
``is_staff`` treat every observer as staff) and server admins everywhere, including DMs
and rooms outside any service. A service's own room counts as belonging to that service.

- ``moderate_join {visible: false}`` records an *observation*: the staff member's live
  connections receive the room's events (``hub.observed_rooms``) and may page its history
  (a ``rooms.read_guards`` entry), with no membership event, so members do not see them in
  the member list. Observations are stored (``staff_observers``) and survive restarts.
  Losing the staff role, or leaving the service, stops the live delivery at once (the
  stored observation stays, listed with ``entitled: false``).
- ``moderate_join {visible: true}`` is a real join that bypasses the service and DM join
  guards (and the invite-only rule: the room's most powerful member "invites" first), with
  ``"staff": {"role": ROLE}`` in the member event content: the staff badge members see.
- Every room of a service, every DM and every service room carries the ``ps.room.moderation``
  state event (``protocol.staff.NOTICE``): set when the room is created, and added at
  start-up to rooms that lack it. It never names a moderator or says who is watching.

Publishes ``ctx.extras["staff"]`` (``may_moderate(user, room)``, ``observing(user)``,
``service_for(room)``) and the list ``ctx.extras["member_card_sections"]``: callables
``(service_id, user_id) -> dict`` (or an awaitable of one) whose keys are merged into
member cards (recent flags, reports, sanctions).
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from twisted.logger import Logger

from protocol import staff as P
from protocol.canonical_json import encode_canonical
from protocol.errors import BadField, Forbidden, NotFound, RoomNotFound
from protocol.events import SPACE_KIND
from protocol.spaces import ROLE as ROLE_EVENT
from protocol.spaces import STAFF_ROLES
from sharon_server.accounts import Session
from sharon_server.event_types import EventType
from sharon_server.ops import register_handlers
from sharon_server.storage.schema import accounts as accounts_table
from sharon_server.storage.schema_staff import staff_observers

__all__ = ["install", "StaffDirectory"]

log = Logger(namespace="sharon.staff")

_MEMBER = "m.room.member"
MAX_OBSERVED = 500
"""At most this many rooms observed by one staff member at a time (bounds the read guard)."""
_CARD_KEYS = ("user_id", "pseudonym", "service_id", "role", "account_age_days", "joined_ts",
              "has_identity", "room_id", "membership")


class StaffDirectory:
    """Who may moderate which room, and who observes which room (in memory, from the DB)."""

    def __init__(self, rooms: Any, services: Any, db: Any) -> None:
        self._rooms = rooms
        self._services = services
        self._db = db
        self.observing: Dict[str, Dict[str, bool]] = {}
        """user -> {room_id: visible}."""

    def service_for(self, room_id: str) -> Optional[str]:
        """The service a room belongs to; a service's own room belongs to itself."""
        if self._services is None:
            return None
        if self._services.is_service(room_id):
            return room_id
        return self._services.service_of(room_id)

    def staff_role(self, user_id: str, room_id: str) -> Optional[str]:
        """The caller's staff role for this room ("admin" for server admins), or None."""
        if self._services is None:
            return None
        service = self.service_for(room_id)
        role = self._services.role(service, user_id) if service is not None else None
        if role in STAFF_ROLES:
            return role
        if self._services.is_admin(user_id):
            return "admin"
        return None

    def may_moderate(self, user_id: str, room_id: str) -> bool:
        """True for staff of the room's service and for server admins."""
        return room_id in self._rooms.rooms and self.staff_role(user_id, room_id) is not None

    def observed(self, user_id: str) -> List[str]:
        """The rooms ``user_id`` observes that they may still moderate."""
        return [r for r in self.observing.get(user_id, ()) if self.may_moderate(user_id, r)]

    def may_read(self, user_id: str, room_id: str) -> bool:
        """The read guard: an observer of the room who is still entitled to moderate it."""
        rooms = self.observing.get(user_id)
        return rooms is not None and room_id in rooms and self.may_moderate(user_id, room_id)

    async def load(self) -> None:
        """Read every stored observation."""
        observing: Dict[str, Dict[str, bool]] = {}
        async with self._db.read_engine.connect() as conn:
            for row in await conn.execute(sa.select(*staff_observers.c)):
                observing.setdefault(row.user_id, {})[row.room_id] = bool(row.visible)
        self.observing = observing

    async def store(self, user_id: str, room_id: str, visible: bool, now: int) -> None:
        """Record (or replace) an observation."""
        t = staff_observers
        async with self._db.engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.user_id == user_id, t.c.room_id == room_id))
            await conn.execute(t.insert().values(user_id=user_id, room_id=room_id, visible=visible, since_ts=now))
        self.observing.setdefault(user_id, {})[room_id] = visible

    async def forget(self, user_id: str, room_id: str) -> bool:
        """Drop an observation; True if there was one."""
        t = staff_observers
        async with self._db.engine.begin() as conn:
            await conn.execute(t.delete().where(t.c.user_id == user_id, t.c.room_id == room_id))
        rooms = self.observing.get(user_id, {})
        found = rooms.pop(room_id, None) is not None
        if not rooms:
            self.observing.pop(user_id, None)
        return found

    async def since(self, user_id: str) -> Dict[str, int]:
        """room_id -> since_ts of the user's stored observations."""
        t = staff_observers
        async with self._db.read_engine.connect() as conn:
            rows = await conn.execute(sa.select(t.c.room_id, t.c.since_ts).where(t.c.user_id == user_id))
            return {r.room_id: r.since_ts for r in rows}


def _as(user_id: str, accounts: Any) -> Session:
    return Session(user_id, "", accounts.pseudonym_of(user_id) or "", b"")


def install(ctx: Any) -> None:
    """Wire staff access into the room service and register the staff operations."""
    rooms, accounts, hub, services = ctx.rooms, ctx.accounts, ctx.hub, ctx.services
    staff = StaffDirectory(rooms, services, ctx.db)
    sections: List[Any] = ctx.extras.setdefault("member_card_sections", [])
    ctx.extras["staff"] = staff
    rooms.read_guards.append(staff.may_read)
    hub.observed_rooms = staff.observed
    rooms.replay_extra = staff.observed  # a resume replays observed rooms too

    async def audit(actor: str, action: str, **fields: Any) -> None:
        if ctx.audit is not None:
            await ctx.audit.append(actor, action, **fields)

    async def refresh_admins() -> None:
        if services is not None:
            await services.refresh_admins()

    # -- server-sent events outside the guards ---------------------------------------------
    async def force_event(room_id: str, sender: str, etype: str, content: Dict[str, Any],
                          state_key: str) -> tuple:
        """Build, authorise and commit one state event without the join guards (staff path)."""
        rooms._check_available()  # noqa: SLF001 - the staff bypass of the guards lives here
        state = rooms.rooms[room_id]
        signed, event_id, pos = rooms._build(room_id, sender, etype, content, state_key)  # noqa: SLF001
        await rooms.committer.submit(rooms._pending(room_id, signed, event_id, pos, state))  # noqa: SLF001
        return event_id, pos

    def steward(room_id: str) -> Optional[str]:
        """The joined member with the highest power level (to invite staff, set the notice)."""
        state = rooms.rooms[room_id]
        joined = state.joined_members()
        creator = state.creator
        if creator in joined:
            return creator
        if not joined:
            return None
        levels = state.power_levels()
        return max(sorted(joined), key=lambda u: levels.user_level(u, state.creators))

    # -- the moderation notice -------------------------------------------------------------
    def wants_notice(room_id: str) -> bool:
        kind = rooms.kinds.get(room_id)
        return kind in ("dm", SPACE_KIND) or staff.service_for(room_id) is not None

    def notice_content(room_id: str) -> Dict[str, Any]:
        service = staff.service_for(room_id)
        name = None
        if service is not None:
            name = rooms.rooms[service].name or "service"
        content: Dict[str, Any] = {"notice": P.notice_text(name)}
        if service is not None:
            content["service_id"] = service
        return content

    async def set_notice(room_id: str) -> bool:
        state = rooms.rooms.get(room_id)
        if state is None or state.get(P.NOTICE, "") is not None or not wants_notice(room_id):
            return False
        sender = steward(room_id)
        if sender is None:
            return False
        await force_event(room_id, sender, P.NOTICE, notice_content(room_id), "")
        return True

    async def on_created(session: Session, room_id: str, kind: str, options: Dict[str, Any]) -> None:
        await set_notice(room_id)

    rooms.created_hooks.append(on_created)

    def show_notice(user_id: str, summaries: List[Dict[str, Any]]) -> None:
        """Room lists carry the moderation notice (``moderation_notice``) so clients show it."""
        for summary in summaries:
            state = rooms.rooms.get(summary.get("room_id", ""))
            event = state.get(P.NOTICE, "") if state is not None else None
            if event is not None and isinstance(event["content"].get("notice"), str):
                summary["moderation_notice"] = event["content"]["notice"]

    decorators = ctx.extras.setdefault("room_list_decorators", [])
    decorators.append(show_notice)
    core_list = getattr(rooms, "room_list_decorators", None)
    if isinstance(core_list, list) and core_list is not decorators:
        core_list.append(show_notice)

    async def load() -> None:
        await staff.load()
        added = 0
        for room_id in sorted(rooms.rooms):
            try:
                added += await set_notice(room_id)
            except Exception:  # noqa: BLE001 - one odd room must not stop the server starting
                log.failure("staff.notice_failed", room_id=room_id)
        log.info("staff.loaded", observers=len(staff.observing), notices_added=added)

    ctx.add_loader(load)

    def suspend_unentitled(target: str) -> None:
        """Stop ``target``'s live observations of the rooms they may no longer moderate (the
        stored observation stays: ``moderating`` lists it with ``entitled: false``)."""
        for room_id in list(staff.observing.get(target, ())):
            state = rooms.rooms.get(room_id)
            if state is None or staff.may_moderate(target, room_id) or state.membership(target) == "join":
                continue
            hub.observe(target, room_id, False)
            log.info("staff.observation_suspended", room_id=room_id, user_id=target)

    class _RoleWatch(EventType):
        """When a role change takes a staff role away, stop that user's live observations of
        the rooms they may no longer moderate (one string compare per event otherwise)."""

        def committed(self, sctx: Any, event_id: str, pos: int, event: Dict[str, Any]) -> None:
            if event["type"] != ROLE_EVENT or not staff.observing:
                return
            key = event.get("state_key") or ""
            if key.startswith("_") and key[1:] in staff.observing:
                suspend_unentitled(key[1:])

    rooms.observers.append(_RoleWatch())

    def on_membership(room_id: str, user_id: str, membership: Any) -> None:
        """Leaving (or being removed or banned from) a service ends its staff's observations
        at once, as losing the role does (member events do not pass the observers)."""
        if user_id in staff.observing and services is not None and services.is_service(room_id):
            suspend_unentitled(user_id)

    listeners = getattr(rooms, "membership_listeners", None)
    if isinstance(listeners, list):
        listeners.append(on_membership)

    # -- moderate_join / moderate_leave / moderating --------------------------------------
    def require_room(room_id: str) -> Any:
        state = rooms.rooms.get(room_id)
        if state is None:
            raise RoomNotFound(f"no room {room_id} on this server", "room_id")
        return state

    async def visible_join(user_id: str, room_id: str, role: str) -> tuple:
        state = rooms.rooms[room_id]
        if state.membership(user_id) == "join":
            event = state.get(_MEMBER, user_id)
            return event["event_id"], None
        pseudonym = accounts.pseudonym_of(user_id) or ""
        if state.join_rule() != "public" and state.membership(user_id) != "invite":
            inviter = steward(room_id)
            if inviter is None:
                raise Forbidden("nobody is left in this room to let staff in")
            await force_event(room_id, inviter, _MEMBER, {"membership": "invite", "pseudonym": pseudonym}, user_id)
        return await force_event(room_id, user_id, _MEMBER,
                                 {"membership": "join", "pseudonym": pseudonym, "staff": {"role": role}}, user_id)

    async def moderate_join(conn: Any, req: P.ModerateJoin) -> Dict[str, Any]:
        session = conn.require_session()
        room_id = str(req.room_id)
        require_room(room_id)
        await refresh_admins()
        role = staff.staff_role(session.user_id, room_id)
        if role is None:
            raise Forbidden("only staff of this room's service (or server admins) can moderate it")
        now = ctx.now_ms()
        current = staff.observing.get(session.user_id, {})
        if room_id not in current and len(current) >= MAX_OBSERVED:
            raise BadField(f"you already moderate {MAX_OBSERVED} rooms; leave some first", "room_id")
        service = staff.service_for(room_id)
        out: Dict[str, Any] = {"room_id": room_id, "visible": req.visible, "role": role, "since_ts": now}
        if req.visible:
            event_id, _ = await visible_join(session.user_id, room_id, role)
            out["event_id"] = event_id
        await staff.store(session.user_id, room_id, req.visible, now)
        if not req.visible:
            hub.observe(session.user_id, room_id, True)
        action = "staff.join" if req.visible else "staff.observe"
        await audit(session.user_id, action, service=service, details={"room_id": room_id, "role": role})
        log.info(action, room_id=room_id, user_id=session.user_id)
        notice = rooms.rooms[room_id].get(P.NOTICE, "")
        if notice is not None:
            out["notice"] = notice["content"].get("notice", "")
        return out

    async def moderate_leave(conn: Any, req: P.ModerateLeave) -> Dict[str, Any]:
        session = conn.require_session()
        room_id = str(req.room_id)
        state = require_room(room_id)
        visible = staff.observing.get(session.user_id, {}).get(room_id)
        if visible is None:
            raise NotFound(f"you are not moderating room {room_id}", "room_id")
        await staff.forget(session.user_id, room_id)
        if visible and state.membership(session.user_id) == "join":
            await rooms.set_membership(session, room_id, "leave")
        elif state.membership(session.user_id) != "join":
            hub.observe(session.user_id, room_id, False)
        await audit(session.user_id, "staff.leave", service=staff.service_for(room_id),
                    details={"room_id": room_id, "visible": visible})
        return {"room_id": room_id}

    async def moderating(conn: Any, req: P.Moderating) -> Dict[str, Any]:
        session = conn.require_session()
        since = await staff.since(session.user_id)
        out = []
        for room_id, visible in sorted(staff.observing.get(session.user_id, {}).items()):
            state = rooms.rooms.get(room_id)
            if state is None:
                continue
            out.append({"room_id": room_id, "kind": rooms.kinds.get(room_id), "name": state.name or "",
                        "visible": visible, "since_ts": since.get(room_id),
                        "service_id": staff.service_for(room_id),
                        "entitled": staff.may_moderate(session.user_id, room_id)})
        return {"rooms": out}

    # -- member cards ------------------------------------------------------------------------
    async def account_created(user_id: str) -> Optional[int]:
        t = accounts_table.c
        async with ctx.db.read_engine.connect() as dbconn:
            row = (await dbconn.execute(sa.select(t.created_ts).where(t.user_id == user_id))).first()
        return None if row is None else int(row.created_ts)

    async def card_sections(service: Optional[str], user_id: str, card: Dict[str, Any]) -> None:
        for section in list(sections):
            try:
                result = section(service, user_id)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:  # noqa: BLE001 - a failing section must not hide the card
                log.failure("staff.card_section_failed", section=getattr(section, "__name__", "?"))
                continue
            for key, value in (result or {}).items():
                if key not in _CARD_KEYS:
                    card[key] = value

    async def without_identity(user_id: str, card: Dict[str, Any]) -> Dict[str, Any]:
        """Defence in depth: a card carrying any of the member's identity values is cut back."""
        vault = ctx.vault
        identity = await vault.get(user_id) if vault is not None else None
        if identity is None:
            return card
        from protocol.identity import identity_values
        encoded = encode_canonical(card).decode("utf-8")
        if not any(v in encoded for v in identity_values(identity)):
            return card
        log.warn("staff.card_identity_dropped", user_id=user_id)
        return {k: card[k] for k in _CARD_KEYS if k in card and k not in ("pseudonym",)}

    async def member_card(conn: Any, req: P.MemberCard) -> Dict[str, Any]:
        session = conn.require_session()
        target = str(req.user_id)
        await refresh_admins()
        room_id = str(req.room_id) if req.room_id is not None else None
        if req.service_id is not None:
            service: Optional[str] = str(req.service_id)
            services.require_service(service)
        else:
            require_room(room_id)
            service = staff.service_for(room_id)
        if not services.is_staff(service, session.user_id):
            raise Forbidden("only staff of this service can see member cards")
        where = room_id if room_id is not None else service
        membership = rooms.rooms[where].membership(target)
        if membership is None or accounts.pseudonym_of(target) is None:
            raise NotFound(f"{target} is not a member here", "user_id")
        member_event = rooms.rooms[where].get(_MEMBER, target)
        created = await account_created(target)
        now = ctx.now_ms()
        card: Dict[str, Any] = {
            "user_id": target, "pseudonym": accounts.pseudonym_of(target), "service_id": service,
            "role": services.role(service, target) if service is not None else None,
            "account_age_days": None if created is None else max(0, (now - created) // 86_400_000),
            "joined_ts": member_event["origin_server_ts"] if member_event else None,
            "membership": membership,
            "has_identity": bool(ctx.vault is not None and await ctx.vault.has(target)),
        }
        if room_id is not None:
            card["room_id"] = room_id
        await card_sections(service, target, card)
        card = await without_identity(target, card)
        await audit(session.user_id, "staff.card", member=target, service=service,
                    details={"room_id": room_id} if room_id else {})
        return card

    register_handlers({
        P.ModerateJoin: moderate_join, P.ModerateLeave: moderate_leave, P.Moderating: moderating,
        P.MemberCard: member_card,
    })
