"""Moderation (#6): pre-moderation and held posts, actions on events, sanctions, appeals.

The model is in docs/safety.md and the wire format in docs/protocol.md §8.9. In short:

- an observer's ``prepare`` (synchronous, dict lookups only) refuses non-state events of
  muted members and marks post-like events of pre-moderated members, or those a hold rule
  matches, with ``scratch["hold"]``; the room service then calls ``hold`` (installed as
  ``rooms.hold_handler``), which stores the post in ``mod_held`` and answers the sender
  ``{"held": true, ...}``: the event is never built, so peers get nothing live, in history,
  in search, in notifications or mentions until staff approve it;
- marks on events (hidden, redacted, content warning) live in memory and rewrite events per
  viewer in history and replay (``rooms.event_filters``); a ``ps.mod.*`` room event tells
  live clients;
- sanctions (warn, mute, suspend, ban) are rows; the active ones are indexed in memory per
  user so the send path, the login gate and the join guard stay O(1).

Publishes ``ctx.extras["moderation"]`` (a ``Moderation``): ``hold_rules``, ``hide``,
``is_hidden``, ``member_sanctions``, ``is_muted``, ``rules_of``.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.logger import Logger

from protocol import moderation as P
from protocol.b64 import encode_b64url
from protocol.errors import (
    Banned, Forbidden, Muted, RoomNotFound, SharonError, Suspended, UnknownRule,
)
from sharon_server.accounts import Session
from sharon_server.event_types import EventType, SendContext
from sharon_server.features.moderation_marks import Marks, filter_content_listings
from sharon_server.features.moderation_store import ModerationStore

__all__ = ["install", "Moderation"]

log = Logger(namespace="sharon.moderation")

HoldRule = Callable[[SendContext], Optional[str]]


def new_id(prefix: str) -> str:
    """A random opaque ID (``h_``, ``s_``, ``a_`` + 16 random bytes)."""
    return prefix + encode_b64url(os.urandom(16))


class _ModType(EventType):
    """A ``ps.mod.*`` event the server sends when a moderator acts (never a client op)."""

    def __init__(self, etype: str, services: Any) -> None:
        self.etype = etype
        self.services = services

    def prepare(self, ctx: SendContext) -> None:
        """Defence in depth: only staff of the room's service ever send one."""
        room_id = ctx.room_id
        service = room_id if self.services.is_service(room_id) else self.services.service_of(room_id)
        if not self.services.is_staff(service, ctx.session.user_id):
            raise Forbidden("only moderators send moderation events")


class Moderation(Marks):
    """The feature's state and the service other features use."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.rooms = ctx.rooms
        self.services = ctx.services
        self.accounts = ctx.accounts
        self.hub = ctx.hub
        self.now_ms = ctx.now_ms
        self.store = ModerationStore(ctx.db)
        self.hold_rules: List[HoldRule] = []
        """``rule(ctx) -> reason or None``, run for post-like events not already held
        (e.g. the out-of-hours rule of triage). Must be synchronous and cheap."""
        self.marks: Dict[str, Dict[str, Any]] = {}
        self.premod: Dict[Tuple[str, str], List[Any]] = {}
        """(service, user) -> [remaining or None, approved]."""
        self.active: Dict[str, Dict[str, Dict[str, Any]]] = {}
        """user -> sanction_id -> row, for mutes, suspensions and bans not lifted."""

    async def load(self) -> None:
        """Read marks, pre-moderation counts and active sanctions into memory."""
        self.marks = {r["event_id"]: r for r in await self.store.marks()}
        self.premod = {(r["service_id"], r["user_id"]): [r["remaining"], r["approved"]]
                       for r in await self.store.premod()}
        self.active = {}
        for row in await self.store.active_sanctions(self.now_ms()):
            self.active.setdefault(row["user_id"], {})[row["sanction_id"]] = row
        log.info("moderation.loaded", marks=len(self.marks), premod=len(self.premod),
                 active_sanctions=sum(len(v) for v in self.active.values()))

    # -- rules --------------------------------------------------------------------------
    def rules_of(self, service_id: Optional[str]) -> List[Dict[str, str]]:
        """The house rules of a service (the defaults outside services)."""
        if service_id is None:
            return P.DEFAULT_RULES
        return self.services.settings(service_id).get("rules") or P.DEFAULT_RULES

    def rule(self, service_id: Optional[str], rule_id: str, field: str = "rule") -> Dict[str, str]:
        """The rule ``rule_id`` of the service; UnknownRule lists the IDs there are."""
        rules = self.rules_of(service_id)
        for rule in rules:
            if rule["id"] == rule_id:
                return rule
        ids = ", ".join(r["id"] for r in rules)
        raise UnknownRule(f"{field} {rule_id!r} is not a rule of this service; its rules are: {ids}", field)

    # -- sanctions in memory ----------------------------------------------------------------
    def _current(self, user_id: str, kind: str, service_id: Optional[str],
                 any_service: bool = False) -> Optional[Dict[str, Any]]:
        rows = self.active.get(user_id)
        if not rows:
            return None
        now = self.now_ms()
        for sanction_id, row in list(rows.items()):
            if row["until_ts"] is not None and row["until_ts"] <= now:
                del rows[sanction_id]
                continue
            if row["kind"] == kind and (any_service or row["service_id"] is None
                                        or row["service_id"] == service_id):
                return row
        if not rows:
            self.active.pop(user_id, None)
        return None

    def is_muted(self, user_id: str, service_id: Optional[str]) -> Optional[int]:
        """The end of the member's mute in the service (0: open-ended), or None."""
        row = self._current(user_id, "mute", service_id)
        if row is None:
            return None
        return row["until_ts"] or 0

    def is_banned(self, user_id: str, service_id: Optional[str]) -> bool:
        """True if the user is banned from the service (or server-wide)."""
        return self._current(user_id, "ban", service_id) is not None

    def member_sanctions(self, user_id: str, service_id: Optional[str]) -> List[Dict[str, Any]]:
        """The member's active mutes, suspensions and bans in the service (staff form)."""
        rows = self.active.get(user_id) or {}
        now = self.now_ms()
        return [self.staff_form(r) for r in rows.values()
                if (r["until_ts"] is None or r["until_ts"] > now)
                and (service_id is None or r["service_id"] in (None, service_id))]

    async def card_section(self, service_id: str, user_id: str) -> Dict[str, Any]:
        """Member-card section (staff): the member's ten newest sanctions here or server-wide."""
        rows = await self.store.sanctions([service_id, None], user_id, 10)
        appeals = await self.store.appeals_of([r["sanction_id"] for r in rows])
        return {"sanctions": [self.staff_form(r, appeals.get(r["sanction_id"])) for r in rows]}

    def gate(self, user_id: str) -> None:
        """Login/token gate: suspended accounts and server-wide bans are refused."""
        if user_id not in self.active:
            return
        row = self._current(user_id, "suspend", None, any_service=True)
        if row is not None:
            until = f" until {P.format_when(row['until_ts'])}" if row["until_ts"] else ""
            raise Suspended(f"this account is suspended{until} (sanction {row['sanction_id']}; appeal with "
                            f"appeal_signed_out): {row['notice']}")
        row = self._current(user_id, "ban", None)
        if row is not None:
            raise Banned(f"this account is banned from this server (sanction {row['sanction_id']}; appeal with "
                         f"appeal_signed_out): {row['notice']}")

    def join_guard(self, user_id: str, room_id: str, state: Any) -> None:
        """Banned members cannot join (or be invited to) the service or its rooms."""
        if user_id not in self.active:
            return
        service = room_id if self.services.is_service(room_id) else self.services.service_of(room_id)
        if self.is_banned(user_id, service):
            raise Banned("you are banned from this service and cannot join its rooms", "room_id")

    # -- forms --------------------------------------------------------------------------
    def _service_name(self, service_id: Optional[str]) -> str:
        state = self.rooms.rooms.get(service_id) if service_id else None
        return (state.name or "") if state is not None else ""

    def member_form(self, row: Dict[str, Any], appeal: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """A sanction as its member sees it: no moderator named."""
        rule = self._rule_or_stub(row["service_id"], row["rule"])
        out = {"sanction_id": row["sanction_id"], "kind": row["kind"], "service_id": row["service_id"],
               "service_name": self._service_name(row["service_id"]), "rule": rule,
               "reason": row["reason"], "notice": row["notice"], "issued_ts": row["issued_ts"],
               "until_ts": row["until_ts"], "lifted_ts": row["lifted_ts"],
               "appeal": None}
        if appeal is not None:
            out["appeal"] = {"appeal_id": appeal["appeal_id"], "outcome": appeal["outcome"],
                             "decision_reason": appeal["decision_reason"], "created_ts": appeal["created_ts"]}
        return out

    def staff_form(self, row: Dict[str, Any], appeal: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """A sanction as staff see it: the member, the issuer and how it ended."""
        out = self.member_form(row, appeal)
        out.update(user_id=row["user_id"], pseudonym=self.accounts.pseudonym_of(row["user_id"]) or "",
                   issued_by=row["issued_by"], lifted_by=row["lifted_by"], lift_reason=row["lift_reason"])
        if appeal is not None:
            out["appeal"].update(text=appeal["text"], decided_by=appeal["decided_by"])
        return out

    def _rule_or_stub(self, service_id: Optional[str], rule_id: Optional[str]) -> Optional[Dict[str, str]]:
        if rule_id is None:
            return None
        for rule in self.rules_of(service_id):
            if rule["id"] == rule_id:
                return dict(rule)
        return {"id": rule_id, "title": rule_id, "plain_words": ""}

    # -- pushes and audit ---------------------------------------------------------------------
    def push(self, user_id: str, frame: Dict[str, Any]) -> None:
        """Send a push frame to every live connection of the user."""
        for conn in list(self.hub.user_conns.get(user_id, ())):
            conn.reply(frame)

    async def tell(self, user_id: str, frame: Dict[str, Any]) -> None:
        """Push a notice to the member's live connections and hand it to the notifier (if a
        feature installed one: ``notify(user_id, kind, frame)``) for members offline."""
        self.push(user_id, frame)
        notifier = self.ctx.notifier or self.ctx.extras.get("notifier")
        notify = getattr(notifier, "notify", None)
        if notify is None:
            return
        try:
            result = notify(user_id, frame["op"], frame)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - the push went and the notice is stored; never undo
            log.failure("moderation.notify_failed", op=frame.get("op"))

    async def resolve_triage(self, service_id: Optional[str], held_id: str, outcome: str, by: str) -> None:
        """Close the triage item of a decided held post (when the triage queue is installed)."""
        triage = self.ctx.extras.get("triage")
        resolve = getattr(triage, "resolve_ref", None)
        if resolve is None or service_id is None:
            return
        try:
            await resolve(service_id, held_id, outcome, by)
        except Exception:  # noqa: BLE001 - the decision stands; the queue item can be closed by hand
            log.failure("moderation.triage_resolve_failed", held_id=held_id)

    async def audit(self, actor: str, action: str, **fields: Any) -> None:
        if self.ctx.audit is not None:
            await self.ctx.audit.append(actor, action, **fields)

    # -- staff checks ---------------------------------------------------------------------
    async def require_staff(self, service_id: Optional[str], user_id: str) -> None:
        """Forbidden unless staff of the service (server admins anywhere; outside services: admins)."""
        await self.services.refresh_admins()
        if service_id is not None and not self.services.is_service(service_id):
            raise RoomNotFound(f"no service {service_id}", "service_id")
        if not self.services.is_staff(service_id, user_id):
            raise Forbidden("only staff of this service can do that")

    def staff_services(self, user_id: str) -> Optional[List[Optional[str]]]:
        """Services the user is staff of (None: all, for server admins)."""
        if self.services.is_admin(user_id):
            return None
        return [s for s in self.services.services_of(user_id) if self.services.is_staff(s, user_id)]

    # -- pre-moderation -------------------------------------------------------------------
    def _dm_with_staff(self, ctx: SendContext, service: str) -> bool:
        create = ctx.state.create_event
        users = create["content"].get("dm_users") if create else None
        if type(users) is not list:
            return False
        return any(u != ctx.session.user_id and self.services.is_staff(service, u) for u in users)

    def premod_reason(self, ctx: SendContext, service: str) -> Optional[str]:
        """Why this post is held by pre-moderation, or None."""
        user = ctx.session.user_id
        settings = self.services.settings(service)
        mode = settings.get("premoderation", "off")
        entry = self.premod.get((service, user))
        if entry is None and mode == "off":
            return None
        if self.services.is_staff(service, user):
            return None
        if ctx.kind == "dm" and self._dm_with_staff(ctx, service):
            return None  # a member can always reach staff
        remaining, approved = entry if entry is not None else (None, 0)
        if remaining is not None and remaining > 0:
            return "premod_member"
        if mode == "all":
            return "premoderation"
        if mode == "new_members" and remaining is None and approved < settings.get("premod_first_posts", 3):
            return "premoderation"
        return None

    def count_approved(self, service: Optional[str], user: str) -> Optional[Tuple[Optional[int], int]]:
        if service is None:
            return None
        entry = self.premod.setdefault((service, user), [None, 0])
        entry[1] += 1
        if entry[0] is not None and entry[0] > 0:
            entry[0] -= 1
        return entry[0], entry[1]

    async def hold(self, ctx: SendContext) -> Dict[str, Any]:
        """``rooms.hold_handler``: store a held post; the same (author, txn_id) gives the same reply."""
        author = ctx.session.user_id
        if ctx.txn_id is not None:
            existing = await self.store.held_by_txn(author, ctx.txn_id)
            if existing is not None:
                return dict(self.held_reply(existing), duplicate=True)
        reason = str(ctx.scratch["hold"])[:200]
        content = {k: v for k, v in ctx.content.items() if k != "mentions"}
        service = ctx.scratch.get("service")
        row = {"held_id": new_id("h_"), "service_id": service, "room_id": ctx.room_id, "author": author,
               "etype": ctx.etype, "state_key": ctx.state_key, "txn_id": ctx.txn_id,
               "content": json.dumps(content, sort_keys=True, ensure_ascii=False), "reason": reason,
               "status": "held", "created_ts": self.now_ms(), "decided_ts": None, "decided_by": None,
               "decision_rule": None, "decision_reason": None, "event_id": None}
        if not await self.store.insert_held(row):
            existing = await self.store.held_by_txn(author, ctx.txn_id or "")
            if existing is not None:
                return dict(self.held_reply(existing), duplicate=True)
            raise SharonError("could not hold the post")
        log.info("moderation.held", held_id=row["held_id"], room_id=ctx.room_id, reason=reason)
        await self._triage_item(row, ctx)
        reply = self.held_reply(row)
        sign = ctx.scratch.get("signpost")  # triage's crisis signposting: also for senders not live
        if isinstance(sign, dict):
            reply["signpost"] = {"message": sign.get("message"), "resources": sign.get("resources") or []}
        return reply

    async def _triage_item(self, row: Dict[str, Any], ctx: SendContext) -> None:
        triage = self.ctx.extras.get("triage")
        if triage is None or not hasattr(triage, "add_item"):
            return
        risk = ctx.scratch.get("risk")
        try:
            await triage.add_item("premod", row["service_id"], row["room_id"], None, row["author"],
                                  getattr(risk, "category", None), getattr(risk, "score", 0) or 0,
                                  f"post held for review ({row['reason']})", ref=row["held_id"])
        except Exception:  # noqa: BLE001 - the queue is a convenience; the held post is stored
            log.failure("moderation.triage_failed", held_id=row["held_id"])

    def held_reply(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """What the author gets for a held post."""
        return {"held": True, "held_id": row["held_id"], "room_id": row["room_id"], "reason": row["reason"],
                "status": row["status"],
                "notice": P.HOLD_NOTICES.get(row["reason"], "A moderator will look at your post before others see it.")}

    def held_form(self, row: Dict[str, Any], staff: bool) -> Dict[str, Any]:
        out = {"held_id": row["held_id"], "room_id": row["room_id"], "service_id": row["service_id"],
               "type": row["etype"], "content": json.loads(row["content"]), "reason": row["reason"],
               "status": row["status"], "created_ts": row["created_ts"], "decided_ts": row["decided_ts"],
               "decision_reason": row["decision_reason"],
               "rule": self._rule_or_stub(row["service_id"], row["decision_rule"]), "event_id": row["event_id"]}
        if row["state_key"] is not None:
            out["state_key"] = row["state_key"]
        if staff:
            out.update(author=row["author"], author_pseudonym=self.accounts.pseudonym_of(row["author"]) or "",
                       decided_by=row["decided_by"])
        return out

    def author_session(self, user_id: str) -> Session:
        return Session(user_id, "", self.accounts.pseudonym_of(user_id) or "", b"")


class _Observer(EventType):
    """Refuses muted senders and holds pre-moderated or rule-matched posts."""

    def __init__(self, mod: Moderation) -> None:
        self.m = mod

    def prepare(self, ctx: SendContext) -> None:
        if ctx.approved:
            return
        m = self.m
        user = ctx.session.user_id
        if user in m.active and ctx.state_key is None and not ctx.etype.startswith("ps.mod."):
            service = ctx.scratch.get("service")
            if not (ctx.kind == "dm" and service is not None and m._dm_with_staff(ctx, service)):
                until = m.is_muted(user, service)
                if until is not None:
                    when = f" until {P.format_when(until)}" if until else ""
                    raise Muted(f"a moderator has paused your posting here{when}; you can still read "
                                "and message staff")
        if ctx.etype not in P.POST_TYPES or ctx.scratch.get("hold"):
            return
        service = ctx.scratch.get("service")
        reason = m.premod_reason(ctx, service) if service is not None else None
        if reason is None:
            for rule in m.hold_rules:
                reason = rule(ctx)
                if reason:
                    break
        if reason:
            ctx.scratch["hold"] = reason


def install(ctx: Any) -> None:
    """Wire moderation into the room service, accounts and the op table."""
    mod = Moderation(ctx)
    ctx.extras["moderation"] = mod
    for etype in P.MOD_TYPES:
        ctx.rooms.register_event_type(_ModType(etype, ctx.services))
    ctx.rooms.observers.append(_Observer(mod))
    ctx.rooms.hold_handler = mod.hold
    ctx.rooms.event_filters.insert(0, mod.event_filter)  # first: later filters (member CW prefs) see the marks
    ctx.rooms.join_guards.insert(0, mod.join_guard)  # first: "banned" says more than "not a member"
    ctx.accounts.gates.append(mod.gate)
    ctx.add_loader(mod.load)
    ctx.extras.setdefault("member_card_sections", []).append(mod.card_section)
    filter_content_listings(ctx, mod)
    from sharon_server.features import moderation_ops, moderation_sanctions
    moderation_ops.register(mod)
    moderation_sanctions.register(mod)
