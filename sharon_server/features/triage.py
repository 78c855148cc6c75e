"""Reports, one triage queue, live alerts, the duty rota and out-of-hours protections (#6).

Publishes ``ctx.extras["triage"]`` (a ``Triage``) for other features:

- ``await add_item(kind, service_id, room_id, event_id, subject_user, category, risk_score,
  summary, ref=None) -> item_id``: put something in the service's queue (kinds: report,
  risk, premod, unanswered, appeal). The same target (an event; a held post's ``ref``; a member in
  a room) merges into its one open item: kinds are united, ``hits`` counts arrivals and
  the risk score is the maximum. A high-risk arrival raises a live ``alert``.
- ``on_duty(service_id) -> set`` and ``anyone_on_duty(service_id) -> bool``: staff marked
  on duty plus staff the ``rota_schedule`` puts on duty at ``ctx.now_ms()``.
- ``alert(service_id, payload) -> [user_id]``: push a frame to the on-duty staff, or to
  the ``rota_fallback`` when nobody is on duty.

Out of hours (nobody on duty for the service): a hold rule appended to the moderation
feature's ``hold_rules`` holds posts whose risk score (``ctx.scratch["risk"]``) is at or
over ``risk_hold_threshold``; the author of such a post is pushed ``signpost`` at once
(also when staff are on duty for risk-to-self posts, per ``signpost_when_on_duty``); and
``report_hide_count`` reports from distinct members hide the reported post pending review.

Open items live in memory (at most ``MAX_OPEN_PER_SERVICE`` per service) and in
``triage_items``; they are reloaded at start-up. docs/protocol.md §8.8 is the reference.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import time
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import attr
import sqlalchemy as sa
from twisted.internet import defer, task
from twisted.logger import Logger

from protocol import triage as P
from protocol.canonical_json import decode_stored
from protocol.content import POST, THREAD
from protocol.errors import (
    AlreadyReported, BadField, Forbidden, NoClinician, NotFound, NotInRoom, RateLimited,
    ReportNoService, RoomNotFound, TriageItemClaimed, TriageItemNotFound,
)
from protocol.events import SPACE_KIND
from sharon_server.event_types import EventType, SendContext
from sharon_server.ops import register_handlers
from sharon_server.storage.schema import events as events_table
from sharon_server.storage.schema_content import content_items
from sharon_server.storage.schema_triage import triage_duty, triage_items, triage_reports

__all__ = ["install", "Triage", "Item", "MAX_OPEN_PER_SERVICE"]

log = Logger(namespace="sharon.triage")

MAX_OPEN_PER_SERVICE = 5000
"""Open items kept in memory per service; beyond it the lowest-ranked leave memory (they
stay open in the database and come back at the next start-up)."""
MAX_LOADED = 200_000
"""Open items (and open reports) read at start-up, newest first."""
MAX_OPEN_REPORTS_PER_MEMBER = 50
"""Open reports one member may have at once (a flood of reports is refused, not queued)."""
MAX_QUEUE_PAGE = 500
SCAN_BATCH = 200
"""Posts looked at per service per unanswered scan."""
SCAN_HORIZON_MS = 30 * 86_400_000
"""Posts older than this are never offered as unanswered."""
DEFAULT_SCAN_S = 300

SIGNPOST_MESSAGE = ("It sounds like things might be really hard right now. You don't have to wait "
                    "for a reply here: these services are there to listen, at any time.")


@attr.s(slots=True, auto_attribs=True)
class Item:
    """One open case in a service's queue."""

    item_id: str
    service_id: str
    target: str
    kinds: List[str]
    room_id: Optional[str]
    event_id: Optional[str]
    subject_user: Optional[str]
    category: str
    detail: Optional[str]
    risk_score: int
    summary: str
    ref: Optional[str]
    hits: int
    created_ts: int
    updated_ts: int
    due_ts: int
    status: str = "open"
    claimed_by: Optional[str] = None
    escalated_ts: Optional[int] = None
    offer_stage: int = 0
    hidden: bool = False
    reporters: Dict[str, Dict[str, Any]] = attr.Factory(dict)
    """Open reports on this item by reporter user ID (staff-only)."""

    def ranking(self) -> Dict[str, Any]:
        return {"item_id": self.item_id, "category": self.category, "risk_score": self.risk_score,
                "created_ts": self.created_ts, "due_ts": self.due_ts}

    def row(self) -> Dict[str, Any]:
        return {"item_id": self.item_id, "service_id": self.service_id, "target": self.target,
                "kinds": ",".join(self.kinds), "room_id": self.room_id, "event_id": self.event_id,
                "subject_user": self.subject_user, "category": self.category, "detail": self.detail,
                "risk_score": self.risk_score, "summary": self.summary, "ref": self.ref, "hits": self.hits,
                "created_ts": self.created_ts, "updated_ts": self.updated_ts, "status": self.status,
                "claimed_by": self.claimed_by, "escalated_ts": self.escalated_ts,
                "offer_stage": self.offer_stage, "hidden": self.hidden}


def _target(event_id: Optional[str], ref: Optional[str], room_id: Optional[str],
            subject: Optional[str]) -> str:
    if event_id:
        return "event:" + event_id
    if ref:
        return "ref:" + ref
    return f"user:{room_id or ''}:{subject or ''}"


def _risk_of(scratch: Dict[str, Any]) -> Tuple[int, Optional[str]]:
    """(score per mille, category) of the risk assessment in ``scratch`` (0, None if none)."""
    risk = scratch.get("risk")
    if risk is None:
        return 0, None
    if isinstance(risk, dict):
        score, category = risk.get("score"), risk.get("category")
    else:
        score, category = getattr(risk, "score", None), getattr(risk, "category", None)
    return P.score_milli(score), (category if type(category) is str else None)


def _scan_interval_s(config: Any) -> float:
    value = getattr(config, "triage_scan_s", None) or os.environ.get("SHARON_TRIAGE_SCAN_S")
    try:
        seconds = float(value) if value is not None else DEFAULT_SCAN_S
    except ValueError:
        seconds = DEFAULT_SCAN_S
    return max(0.0, seconds)


class Triage:
    """The queue, reports, duty and alerts of every service."""

    kinds = P.KINDS
    """The item kinds ``add_item`` takes (other features check for ``appeal``)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.rooms = ctx.rooms
        self.services = ctx.services
        self.accounts = ctx.accounts
        self.hub = ctx.hub
        self.db = ctx.db
        self.now_ms = ctx.now_ms
        self.items: Dict[str, Item] = {}
        self.by_target: Dict[Tuple[str, str], str] = {}
        self.per_service: Dict[str, Set[str]] = {}
        self.marked: Dict[str, Dict[str, int]] = {}
        """service -> {user_id: since_ts} of staff who marked themselves on duty."""
        self.open_reports: Dict[str, int] = {}
        self._write = asyncio.Lock()
        self._loop: Optional[task.LoopingCall] = None
        self.alert_latency_ms: List[float] = []

    # -- start-up -----------------------------------------------------------------------------
    async def load(self) -> None:
        """Reload open items, their open reports and the duty marks."""
        self.items.clear(); self.by_target.clear(); self.per_service.clear()
        self.marked.clear(); self.open_reports.clear()
        async with self.db.read_engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(*triage_items.c).where(triage_items.c.status != "resolved")
                .order_by(triage_items.c.created_ts.desc()).limit(MAX_LOADED))).all()
            for r in rows:
                m = r._mapping
                if len(self.per_service.get(m["service_id"], ())) >= MAX_OPEN_PER_SERVICE:
                    continue
                self._remember(Item(
                    item_id=m["item_id"], service_id=m["service_id"], target=m["target"],
                    kinds=[k for k in m["kinds"].split(",") if k], room_id=m["room_id"],
                    event_id=m["event_id"], subject_user=m["subject_user"], category=m["category"],
                    detail=m["detail"], risk_score=m["risk_score"], summary=m["summary"], ref=m["ref"],
                    hits=m["hits"], created_ts=m["created_ts"], updated_ts=m["updated_ts"],
                    due_ts=self._due(m["service_id"], m["category"], m["created_ts"]),
                    status=m["status"], claimed_by=m["claimed_by"], escalated_ts=m["escalated_ts"],
                    offer_stage=m["offer_stage"], hidden=bool(m["hidden"])))
            reports = await conn.execute(sa.select(*triage_reports.c).where(triage_reports.c.outcome.is_(None))
                                         .order_by(triage_reports.c.created_ts.desc()).limit(MAX_LOADED))
            for r in reports:
                m = r._mapping
                item = self.items.get(m["item_id"])
                if item is not None:
                    item.reporters[m["reporter"]] = self._report_view(dict(m))
                self.open_reports[m["reporter"]] = self.open_reports.get(m["reporter"], 0) + 1
            for r in await conn.execute(sa.select(*triage_duty.c)):
                self.marked.setdefault(r.service_id, {})[r.user_id] = r.since_ts
        log.info("triage.loaded", items=len(self.items), on_duty_marks=sum(len(v) for v in self.marked.values()))
        self.start_scanner()

    def start_scanner(self) -> None:
        interval = _scan_interval_s(self.ctx.config)
        if interval <= 0 or self._loop is not None:
            return

        def tick() -> Any:
            return defer.Deferred.fromFuture(asyncio.ensure_future(self.scan_all()))

        self._loop = task.LoopingCall(tick)
        self._loop.start(interval, now=False).addErrback(
            lambda f: log.failure("triage.scanner_failed", failure=f))

    # -- settings and people --------------------------------------------------------------------
    def settings(self, service_id: str) -> Dict[str, Any]:
        return self.services.settings(service_id)

    def _due(self, service_id: str, category: str, created_ts: int) -> int:
        return P.due_ts(created_ts, category, self.settings(service_id).get("response_targets", {}))

    def alert_threshold(self, service_id: str) -> int:
        return P.score_milli(self.settings(service_id).get("risk_alert_threshold", 500))

    def hold_threshold(self, service_id: str) -> int:
        return P.score_milli(self.settings(service_id).get("risk_hold_threshold", 800))

    def members_with(self, service_id: str, roles: Iterable[str]) -> Set[str]:
        """Joined members of the service whose role is one of ``roles``."""
        state = self.rooms.rooms.get(service_id)
        if state is None:
            return set()
        wanted = set(roles)
        return {u for u in state.joined_members() if self.services.role(service_id, u) in wanted}

    def on_duty(self, service_id: str) -> Set[str]:
        """Staff on duty now: marked on, or scheduled by the rota at ``ctx.now_ms()``."""
        marked = set(self.marked.get(service_id, ()))
        schedule = self.settings(service_id).get("rota_schedule") or []
        scheduled = P.scheduled_now(schedule, self.now_ms()) if schedule else set()
        return {u for u in marked | scheduled if self.services.is_staff(service_id, u)}

    def anyone_on_duty(self, service_id: str) -> bool:
        """True unless nobody is marked on duty and nobody is scheduled now."""
        return bool(self.on_duty(service_id))

    def fallback_users(self, service_id: str) -> Set[str]:
        """Who the ``rota_fallback`` names now (roles resolved); every staff member if nobody."""
        out: Set[str] = set()
        roles = []
        for entry in self.settings(service_id).get("rota_fallback") or []:
            if entry in P.FALLBACK_ROLES:
                roles.append(entry)
            elif self.services.is_staff(service_id, entry):
                out.add(entry)
        out |= self.members_with(service_id, roles)
        if not out:
            out = self.members_with(service_id, ("moderator", "clinician", "admin"))
        return out

    def alert_targets(self, service_id: str, exclude: Iterable[str] = ()) -> Tuple[Set[str], str]:
        """Who gets an alert: the on-duty staff, else the fallback (never anyone in ``exclude``)."""
        left_out = set(exclude)
        on = self.on_duty(service_id) - left_out
        if on:
            return on, "on_duty"
        return self.fallback_users(service_id) - left_out, "fallback"

    def push(self, user_ids: Iterable[str], frame: Dict[str, Any]) -> int:
        """Write ``frame`` to every live connection of ``user_ids``; how many got it."""
        sent = 0
        for user_id in user_ids:
            for conn in list(self.hub.user_conns.get(user_id, ())):
                conn.reply(frame)
                sent += 1
        return sent

    def alert(self, service_id: str, payload: Dict[str, Any], exclude: Iterable[str] = ()) -> List[str]:
        """Push ``payload`` to the on-duty staff of the service (the fallback if nobody);
        ``exclude``: staff who must not get it (the member an item is about)."""
        targets, route = self.alert_targets(service_id, exclude)
        frame = dict(payload)
        frame.setdefault("op", "alert")
        frame.setdefault("service_id", service_id)
        frame["route"] = route
        sent = self.push(targets, frame)
        log.info("triage.alert", service_id=service_id, route=route, staff=len(targets), connections=sent)
        return sorted(targets)

    # -- items ------------------------------------------------------------------------------------
    def _remember(self, item: Item) -> None:
        self.items[item.item_id] = item
        self.by_target[(item.service_id, item.target)] = item.item_id
        self.per_service.setdefault(item.service_id, set()).add(item.item_id)

    def _forget(self, item: Item) -> None:
        self.items.pop(item.item_id, None)
        if self.by_target.get((item.service_id, item.target)) == item.item_id:
            del self.by_target[(item.service_id, item.target)]
        self.per_service.get(item.service_id, set()).discard(item.item_id)

    def _make_room(self, service_id: str) -> None:
        ids = self.per_service.get(service_id, set())
        if len(ids) < MAX_OPEN_PER_SERVICE:
            return
        now = self.now_ms()
        ranked = P.rank([self.items[i].ranking() for i in ids], now)
        victim = self.items[ranked[-1]["item_id"]]
        self._forget(victim)
        log.warn("triage.evicted_from_memory", service_id=service_id, item_id=victim.item_id)

    def is_high_risk(self, item: Item) -> bool:
        return P.is_high_risk(item.category, item.risk_score, self.alert_threshold(item.service_id))

    async def add_item(self, kind: str, service_id: str, room_id: Optional[str], event_id: Optional[str],
                       subject_user: Optional[str], category: Optional[str], risk_score: Any,
                       summary: Optional[str], ref: Optional[str] = None, *,
                       created_ts: Optional[int] = None, report: Optional[Dict[str, Any]] = None) -> str:
        """Queue something (see the module docstring); returns the open item's ID.

        ``report`` (the report row, from the ``report`` op) is attached to the item before
        any alert goes out; AlreadyReported if its reporter already has one open on it.
        """
        started = time.perf_counter()
        if kind not in P.KINDS:
            raise ValueError(f"unknown triage kind {kind!r}")
        now = self.now_ms()
        score = P.score_milli(risk_score)
        if kind == "premod" and score < self.alert_threshold(service_id):
            category = None  # held for another reason (e.g. pre-moderation), not for risk
        norm = P.normalise_category(kind, category)
        detail = category if category is not None and category != norm else None
        target = _target(event_id, ref, room_id, subject_user)
        summary = (summary or "")[:P.MAX_SUMMARY_CHARS]
        existing = self.by_target.get((service_id, target))
        item = self.items.get(existing) if existing is not None else None
        if item is not None and report is not None and report["reporter"] in item.reporters:
            raise AlreadyReported("you have already reported this; the team is looking at it")
        if item is not None:
            was_high = self.is_high_risk(item)
            self._attach(item, report)
            if kind not in item.kinds:
                item.kinds.append(kind)
            item.hits += 1
            item.risk_score = max(item.risk_score, score)
            if P.SEVERITY.get(norm, 0) > P.SEVERITY.get(item.category, 0):
                item.category, item.detail = norm, detail
                item.due_ts = self._due(service_id, norm, item.created_ts)
            item.summary = item.summary or summary
            item.updated_ts = now
            await self._save(item)
            if self.is_high_risk(item) and not was_high:
                self._alert_item(item, started)
            return item.item_id
        self._make_room(service_id)
        created = created_ts if created_ts is not None else now
        item = Item(item_id="tq_" + secrets.token_hex(8), service_id=service_id, target=target, kinds=[kind],
                    room_id=room_id, event_id=event_id, subject_user=subject_user, category=norm,
                    detail=detail, risk_score=score, summary=summary, ref=ref, hits=1, created_ts=created,
                    updated_ts=now, due_ts=self._due(service_id, norm, created))
        self._remember(item)
        self._attach(item, report)
        async with self._write:
            async with self.db.engine.begin() as conn:
                await conn.execute(triage_items.insert().values(**item.row()))
        log.info("triage.item", service_id=service_id, item_id=item.item_id, kind=kind, category=norm,
                 risk_score=score)
        if self.is_high_risk(item):
            self._alert_item(item, started)
        return item.item_id

    def _attach(self, item: Item, report: Optional[Dict[str, Any]]) -> None:
        if report is not None:
            report["item_id"] = item.item_id
            item.reporters[report["reporter"]] = self._report_view(report)
            self.open_reports[report["reporter"]] = self.open_reports.get(report["reporter"], 0) + 1

    def _alert_item(self, item: Item, started: float) -> None:
        self.alert(item.service_id, {"op": "alert", "item": self.view(item, self.now_ms())},
                   exclude=[item.subject_user] if item.subject_user else ())
        took = (time.perf_counter() - started) * 1000
        self.alert_latency_ms = (self.alert_latency_ms + [took])[-100:]
        log.info("triage.alert_latency", item_id=item.item_id, ms=round(took, 3))

    async def _save(self, item: Item, **extra: Any) -> None:
        values = dict(item.row(), **extra)
        values.pop("item_id")
        async with self._write:
            async with self.db.engine.begin() as conn:
                await conn.execute(triage_items.update().where(triage_items.c.item_id == item.item_id)
                                   .values(**values))

    def view(self, item: Item, now: int) -> Dict[str, Any]:
        """The staff view of an item (never sent to members)."""
        pseudonym = self.accounts.pseudonym_of
        return {
            "item_id": item.item_id, "service_id": item.service_id, "kinds": list(item.kinds),
            "category": item.category, "detail": item.detail, "risk_score": item.risk_score,
            "summary": item.summary, "room_id": item.room_id, "event_id": item.event_id, "ref": item.ref,
            "subject_user": item.subject_user,
            "subject_pseudonym": (pseudonym(item.subject_user) or "") if item.subject_user else None,
            "hits": item.hits, "report_count": len(item.reporters),
            "reporters": sorted(item.reporters.values(), key=lambda r: r["ts"]),
            "created_ts": item.created_ts, "due_ts": item.due_ts,
            "countdown_ms": P.countdown_ms(item.due_ts, now), "overdue": P.is_overdue(item.due_ts, now),
            "status": item.status, "claimed_by": item.claimed_by,
            "claimed_by_pseudonym": (pseudonym(item.claimed_by) or "") if item.claimed_by else None,
            "escalated": item.escalated_ts is not None, "hidden": item.hidden, "offer_stage": item.offer_stage,
            "high_risk": self.is_high_risk(item),
        }

    def _report_view(self, row: Dict[str, Any]) -> Dict[str, Any]:
        return {"report_id": row["report_id"], "reporter": row["reporter"],
                "reporter_pseudonym": self.accounts.pseudonym_of(row["reporter"]) or "",
                "category": row["category"], "note": row["note"], "ts": row["created_ts"]}

    def ranked(self, service_ids: Iterable[str], now: int) -> List[Item]:
        chosen = [self.items[i] for s in service_ids for i in self.per_service.get(s, ())]
        for item in chosen:  # targets may have changed since the item arrived
            item.due_ts = self._due(item.service_id, item.category, item.created_ts)
        order = {r["item_id"]: n for n, r in enumerate(P.rank([i.ranking() for i in chosen], now))}
        return sorted(chosen, key=lambda i: order[i.item_id])

    # -- closing --------------------------------------------------------------------------------
    async def resolve(self, item: Item, outcome: str, by: Optional[str], note: Optional[str]) -> int:
        """Close ``item``; tell every reporter the outcome. Returns how many reporters were told."""
        now = self.now_ms()
        self._forget(item)
        item.status = "resolved"
        await self._save(item, resolved_by=by, resolved_ts=now, outcome=outcome, note=note)
        async with self._write:
            async with self.db.engine.begin() as conn:
                await conn.execute(triage_reports.update().where(
                    (triage_reports.c.item_id == item.item_id) & triage_reports.c.outcome.is_(None))
                    .values(outcome=outcome, closed_ts=now))
        for reporter, report in item.reporters.items():
            self.open_reports[reporter] = max(0, self.open_reports.get(reporter, 1) - 1)
            frame = {"op": "report_outcome", "report_id": report["report_id"], "category": report["category"],
                     "outcome": outcome, "message": P.outcome_words(outcome), "ts": now}
            self.push([reporter], frame)
            await self._notify(reporter, frame)
        log.info("triage.resolved", service_id=item.service_id, item_id=item.item_id, outcome=outcome,
                 reporters=len(item.reporters))
        return len(item.reporters)

    async def resolve_ref(self, service_id: str, ref: str, outcome: str, by: Optional[str],
                          note: Optional[str] = None) -> bool:
        """Close the open item of a held post (``ref`` = its held_id), e.g. when a moderator
        approves or rejects it; False if there is none."""
        item = self.items.get(self.by_target.get((service_id, _target(None, ref, None, None)), ""))
        if item is None:
            return False
        await self.resolve(item, str(outcome)[:64] or "action_taken", by, note)
        return True

    async def _notify(self, user_id: str, frame: Dict[str, Any]) -> None:
        notifier = self.ctx.notifier or self.ctx.extras.get("notifier")
        notify = getattr(notifier, "notify", None)
        if notify is None:
            return
        try:
            result = notify(user_id, "report_outcome", frame)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - the push already went; a notifier fault must not undo the close
            log.failure("triage.notify_failed")

    # -- unanswered posts ------------------------------------------------------------------------
    async def scan_all(self) -> None:
        for service_id in sorted(r for r, k in self.rooms.kinds.items() if k == SPACE_KIND):
            try:
                await self.scan(service_id)
            except Exception:  # noqa: BLE001 - one service's fault must not stop the others
                log.failure("triage.scan_failed", service_id=service_id)

    async def scan(self, service_id: str) -> Dict[str, int]:
        """Offer posts left unanswered to peers, then clinicians; close those answered since."""
        settings = self.settings(service_id)
        now = self.now_ms()
        after, escalate_after = settings["unanswered_after_ms"], settings["unanswered_escalate_after_ms"]
        counts = {"offered": 0, "escalated": 0, "answered": 0}
        open_unanswered = [self.items[i] for i in list(self.per_service.get(service_id, ()))
                           if "unanswered" in self.items[i].kinds and self.items[i].event_id]
        if open_unanswered:
            async with self.db.read_engine.connect() as conn:
                rows = await conn.execute(sa.select(content_items.c.event_id, content_items.c.child_count)
                                          .where(content_items.c.event_id.in_([i.event_id for i in open_unanswered])))
                replies = {r.event_id: r.child_count for r in rows}
            for item in open_unanswered:
                if replies.get(item.event_id, 0) > 0:
                    if item.kinds == ["unanswered"]:
                        await self.resolve(item, "answered", None, None)
                        counts["answered"] += 1
                elif item.offer_stage < 2 and now - item.created_ts >= escalate_after:
                    item.offer_stage = 2
                    await self._save(item)
                    self._offer(item, "clinicians")
                    counts["escalated"] += 1
        cut = now - after
        async with self.db.read_engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(content_items.c.event_id, content_items.c.room_id, content_items.c.author,
                          events_table.c.origin_server_ts, events_table.c.json)
                .select_from(content_items.join(events_table, events_table.c.pos == content_items.c.pos))
                .where(content_items.c.service_id == service_id,
                       content_items.c.type.in_([THREAD, POST]),
                       content_items.c.child_count == 0,
                       events_table.c.origin_server_ts <= cut,
                       events_table.c.origin_server_ts >= now - SCAN_HORIZON_MS)
                .order_by(content_items.c.pos).limit(SCAN_BATCH))).all()
            ids = [r.event_id for r in rows]
            seen: Set[str] = set()
            if ids:
                done = await conn.execute(sa.select(triage_items.c.event_id, triage_items.c.kinds)
                                          .where(triage_items.c.event_id.in_(ids)))
                seen = {r.event_id for r in done if "unanswered" in r.kinds.split(",")}
        for r in rows:
            if r.event_id in seen or self.services.is_staff(service_id, r.author):
                continue
            try:
                content = decode_stored(r.json).get("content", {})
            except ValueError:
                content = {}
            title = content.get("title") if type(content.get("title")) is str else ""
            item_id = await self.add_item("unanswered", service_id, r.room_id, r.event_id, r.author, "unanswered",
                                          0, title or "a post with no reply yet", created_ts=r.origin_server_ts)
            item = self.items.get(item_id)
            if item is None:
                continue
            stage = "clinicians" if now - r.origin_server_ts >= escalate_after else "peers"
            item.offer_stage = 2 if stage == "clinicians" else 1
            await self._save(item)
            self._offer(item, stage)
            counts["escalated" if stage == "clinicians" else "offered"] += 1
        if any(counts.values()):
            log.info("triage.scanned", service_id=service_id, **counts)
        return counts

    def _offer(self, item: Item, stage: str) -> None:
        roles = ("peer",) if stage == "peers" else ("clinician",)
        state = self.rooms.rooms.get(item.room_id or "")
        if state is None:
            return
        public = state.join_rule() == "public"
        people = {u for u in self.members_with(item.service_id, roles) - {item.subject_user}
                  if public or state.membership(u) == "join"}  # only those who may read the post
        frame = {"op": "unanswered_offer", "stage": stage, "service_id": item.service_id,
                 "room_id": item.room_id, "event_id": item.event_id, "title": item.summary,
                 "posted_ts": item.created_ts, "item_id": item.item_id if stage == "clinicians" else None}
        sent = self.push(people, frame)
        log.info("triage.unanswered_offer", service_id=item.service_id, stage=stage, people=len(people),
                 connections=sent)


class _OutOfHours(EventType):
    """Signposts the author of a risky post at once (see the module docstring)."""

    def __init__(self, triage: Triage) -> None:
        self.t = triage

    def prepare(self, ctx: SendContext) -> None:
        if ctx.scratch.get("risk") is None or ctx.approved:  # the common case: nothing to do
            return
        service_id = ctx.scratch.get("service")
        if not service_id:
            return
        score, category = _risk_of(ctx.scratch)
        if score <= 0 or score < self.t.hold_threshold(service_id):
            return
        nobody = not self.t.anyone_on_duty(service_id)
        settings = self.t.settings(service_id)
        self_harm = P.normalise_category("risk", category) == "risk_to_self"
        if nobody or (self_harm and settings.get("signpost_when_on_duty", True)):
            frame = {"op": "signpost", "service_id": service_id, "room_id": ctx.room_id,
                     "message": SIGNPOST_MESSAGE, "resources": settings.get("crisis_signposting") or [],
                     "held": bool(ctx.scratch.get("hold"))}
            sent = self.t.push([ctx.session.user_id], frame)
            ctx.scratch["signposted"] = True
            ctx.scratch["signpost"] = frame  # a held post's reply carries it too (not-live senders)
            log.info("triage.signposted", service_id=service_id, out_of_hours=nobody, connections=sent)


def install(ctx: Any) -> None:
    """Publish the queue, append the out-of-hours hold rule, register the operations."""
    if ctx.services is None:  # every queue belongs to a service
        log.warn("triage.not_installed", reason="the services feature is not installed")
        return
    t = Triage(ctx)
    ctx.extras["triage"] = t
    ctx.add_loader(t.load)
    ctx.rooms.observers.append(_OutOfHours(t))
    services, rooms, accounts = ctx.services, ctx.rooms, ctx.accounts

    def out_of_hours_hold(send: SendContext) -> Optional[str]:
        if send.approved or send.scratch.get("risk") is None:
            return None
        service_id = send.scratch.get("service")
        if not service_id:
            return None
        score, _ = _risk_of(send.scratch)
        if score > 0 and score >= t.hold_threshold(service_id) and not t.anyone_on_duty(service_id):
            return "out of hours: held until a moderator has looked at it"
        return None

    def card_section(service_id: str, user_id: str) -> Dict[str, Any]:
        """Member-card section (staff; from memory, no I/O): the open queue items about the
        member in this service, newest first (at most 10), without reporters or notes. Staff
        members' cards get none, so a reported colleague cannot learn of it from their own card."""
        if services.is_staff(service_id, user_id):
            return {}
        open_here = (t.items.get(x) for x in t.per_service.get(service_id, ()))
        mine = sorted((i for i in open_here if i is not None and i.subject_user == user_id),
                      key=lambda i: (-i.created_ts, i.item_id))
        return {"open_items": len(mine),
                "queue": [{"item_id": i.item_id, "kinds": list(i.kinds), "category": i.category,
                           "risk_score": i.risk_score, "report_count": len(i.reporters), "status": i.status,
                           "created_ts": i.created_ts, "hidden": i.hidden} for i in mine[:10]]}

    ctx.extras.setdefault("member_card_sections", []).append(card_section)

    moderation = ctx.extras.get("moderation")
    rules = getattr(moderation, "hold_rules", None) if moderation is not None else None
    if rules is None and isinstance(moderation, dict):
        rules = moderation.get("hold_rules")
    if isinstance(rules, list):
        rules.append(out_of_hours_hold)
    else:
        log.info("triage.no_hold_rules", reason="the moderation feature is not installed")

    async def audit(actor: str, action: str, **fields: Any) -> None:
        if ctx.audit is not None:
            await ctx.audit.append(actor, action, **fields)

    def require_staff(session: Any, service_id: str) -> None:
        services.require_service(service_id)
        if not services.is_staff(service_id, session.user_id):
            raise Forbidden("only staff of this service can do that", "service_id")

    def require_item(session: Any, item_id: str) -> Item:
        item = t.items.get(item_id)
        if item is None or not services.is_staff(item.service_id, session.user_id) \
                or item.subject_user == session.user_id:  # staff never work (or see) cases about themselves
            raise TriageItemNotFound(f"no open triage item {item_id}", "item_id")
        return item

    def is_admin(service_id: str, user_id: str) -> bool:
        return services.is_admin(user_id) or services.role(service_id, user_id) == "admin"

    def workable_item(session: Any, item_id: str) -> Item:
        """An item the caller may release, resolve or escalate: claimed by nobody or by the
        caller (a service or server admin may act on another's claim)."""
        item = require_item(session, item_id)
        if item.claimed_by not in (None, session.user_id) and not is_admin(item.service_id, session.user_id):
            raise TriageItemClaimed("someone else has claimed this item", "item_id")
        return item

    # -- reports ------------------------------------------------------------------------------
    async def report(conn: Any, req: P.Report) -> Dict[str, Any]:
        session = conn.require_session()
        me = session.user_id
        room_id = str(req.room_id)
        state = rooms.rooms.get(room_id)
        if state is None:
            raise RoomNotFound(f"no room {room_id} on this server", "room_id")
        room_service = services.service_of(room_id)
        sees = state.membership(me) == "join" or rooms.may_read(me, room_id) or (
            state.join_rule() == "public" and room_service is not None and services.is_member(room_service, me))
        if not sees:
            raise NotInRoom(f"you cannot see room {room_id}", "room_id")
        event_id = str(req.event_id) if req.event_id is not None else None
        subject = str(req.user_id) if req.user_id is not None else None
        summary = ""
        if event_id is not None:
            row = await ctx.db.events.get_event(event_id)
            if row is None or row.room_id != room_id:
                raise NotFound(f"no event {event_id} in room {room_id}", "event_id")
            if subject is not None and subject != row.sender:
                raise BadField("user_id must be the sender of event_id (or leave it out)", "user_id")
            subject = row.sender
            try:
                content = decode_stored(row.json).get("content", {})
            except ValueError:
                content = {}
            texts = [content.get(k) for k in ("title", "body")]
            summary = " - ".join(x for x in texts if type(x) is str and x)
        else:
            if accounts.pseudonym_of(subject) is None or state.membership(subject) is None:
                raise NotFound(f"{subject} has never been in room {room_id}", "user_id")
            summary = "a member was reported"
        if subject == me:
            raise BadField("you cannot report yourself", "user_id" if event_id is None else "event_id")
        service_id = room_service
        if service_id is None:
            shared = sorted(set(services.services_of(me)) & set(services.services_of(subject or "")))
            service_id = shared[0] if shared else None
        if service_id is None:
            raise ReportNoService("this room belongs to no service, so there is no one to take a report", "room_id")
        target = _target(event_id, None, room_id, subject)
        existing = t.items.get(t.by_target.get((service_id, target), ""))
        if existing is not None and me in existing.reporters:
            raise AlreadyReported("you have already reported this; the team is looking at it")
        if t.open_reports.get(me, 0) >= MAX_OPEN_REPORTS_PER_MEMBER:
            raise RateLimited("you have many open reports; please wait for some to be looked at")
        row = {"report_id": "rp_" + secrets.token_hex(8), "item_id": "", "service_id": service_id,
               "reporter": me, "room_id": room_id, "event_id": event_id, "user_id": subject,
               "category": req.category, "note": req.note, "created_ts": ctx.now_ms(), "outcome": None,
               "closed_ts": None}
        item_id = await t.add_item("report", service_id, room_id, event_id, subject, req.category, 0, summary,
                                   report=row)
        item = t.items.get(item_id)
        async with t._write:
            async with ctx.db.engine.begin() as c:
                await c.execute(triage_reports.insert().values(**row))
        log.info("triage.report", service_id=service_id, item_id=item_id, category=req.category)
        await audit(me, "triage.report", member=subject, service=service_id,
                    details={"item_id": item_id, "report_id": row["report_id"], "category": req.category})
        if item is not None:
            await maybe_hide(item)
        return {"report_id": row["report_id"], "status": "open"}

    async def maybe_hide(item: Item) -> None:
        needed = t.settings(item.service_id).get("report_hide_count", 3)
        if item.hidden or not item.event_id or len(item.reporters) < needed or t.anyone_on_duty(item.service_id):
            return
        moderation = ctx.extras.get("moderation")
        hide = getattr(moderation, "hide", None) if moderation is not None else None
        if hide is None and isinstance(moderation, dict):
            hide = moderation.get("hide")
        reason = "several members raised concerns while no moderator was on duty; it is hidden until one has looked at it"
        if hide is None:
            log.warn("triage.hide_unavailable", item_id=item.item_id)
            return
        try:  # no acting person: the moderation feature records the server as the actor
            await hide(item.room_id, item.event_id, None, None, reason)
        except Exception:  # noqa: BLE001 - the report is stored and staff are alerted anyway
            log.failure("triage.hide_failed", item_id=item.item_id)
            return
        item.hidden = True
        await t._save(item)
        log.info("triage.hidden", service_id=item.service_id, item_id=item.item_id, reports=len(item.reporters))
        t.alert(item.service_id, {"op": "alert", "item": t.view(item, ctx.now_ms()), "hidden": True},
                exclude=[item.subject_user] if item.subject_user else ())

    async def my_reports(conn: Any, req: P.MyReports) -> Dict[str, Any]:
        session = conn.require_session()
        async with ctx.db.read_engine.connect() as c:
            rows = await c.execute(sa.select(*triage_reports.c).where(triage_reports.c.reporter == session.user_id)
                                   .order_by(triage_reports.c.created_ts.desc()).limit(100))
            out = [{"report_id": r.report_id, "room_id": r.room_id, "event_id": r.event_id, "user_id": r.user_id,
                    "category": r.category, "created_ts": r.created_ts,
                    "status": "closed" if r.outcome else "open", "outcome": r.outcome,
                    "message": P.outcome_words(r.outcome) if r.outcome else None} for r in rows]
        return {"reports": out}

    # -- the queue -------------------------------------------------------------------------------
    async def queue(conn: Any, req: P.Queue) -> Dict[str, Any]:
        session = conn.require_session()
        if req.service_id is not None:
            service_ids = [str(req.service_id)]
            require_staff(session, service_ids[0])
        else:
            service_ids = [s for s in t.per_service if services.is_staff(s, session.user_id)]
        now = ctx.now_ms()
        ranked = [i for i in t.ranked(service_ids, now) if i.subject_user != session.user_id]
        return {"items": [t.view(i, now) for i in ranked[:MAX_QUEUE_PAGE]], "total": len(ranked), "now_ts": now}

    async def set_claim(session: Any, item: Item, claimed_by: Optional[str], status: str,
                        action: str) -> Dict[str, Any]:
        """Claim or release ``item``: save it, audit ``action`` and reply with the item."""
        item.claimed_by, item.status = claimed_by, status
        await t._save(item)
        await audit(session.user_id, action, member=item.subject_user, service=item.service_id,
                    details={"item_id": item.item_id})
        return {"item": t.view(item, ctx.now_ms())}

    async def claim(conn: Any, req: P.QueueClaim) -> Dict[str, Any]:
        session = conn.require_session()
        item = require_item(session, req.item_id)
        if item.claimed_by not in (None, session.user_id):
            raise TriageItemClaimed(f"{accounts.pseudonym_of(item.claimed_by) or 'someone else'} has claimed this item",
                                    "item_id")
        return await set_claim(session, item, session.user_id, "claimed", "triage.claim")

    async def release(conn: Any, req: P.QueueRelease) -> Dict[str, Any]:
        session = conn.require_session()
        item = workable_item(session, req.item_id)
        return await set_claim(session, item, None, "open", "triage.release")

    async def resolve(conn: Any, req: P.QueueResolve) -> Dict[str, Any]:
        session = conn.require_session()
        item = workable_item(session, req.item_id)
        told = await t.resolve(item, req.outcome, session.user_id, req.note)
        await audit(session.user_id, "triage.resolve", member=item.subject_user, service=item.service_id,
                    details={"item_id": item.item_id, "outcome": req.outcome, "reporters_told": told})
        shown = False
        if item.hidden and item.event_id and req.outcome == "no_action":  # hidden pending review: reviewed
            unhide = getattr(ctx.extras.get("moderation"), "unhide_automatic", None)
            if unhide is not None:
                try:
                    shown = await unhide(item.room_id, item.event_id, session.user_id,
                                         "a moderator has looked at it and it can stay")
                except Exception:  # noqa: BLE001 - the item is resolved; staff can still unhide by hand
                    log.failure("triage.unhide_failed", item_id=item.item_id)
        out = {"item_id": item.item_id, "outcome": req.outcome, "reporters_told": told}
        if item.hidden:  # hidden by reports: whether the review showed it again
            out["unhidden"] = shown
        return out

    async def escalate(conn: Any, req: P.QueueEscalate) -> Dict[str, Any]:
        session = conn.require_session()
        item = workable_item(session, req.item_id)
        clinicians = t.members_with(item.service_id, ("clinician",)) - {session.user_id, item.subject_user}
        if not clinicians:
            raise NoClinician("this service has no clinician to escalate to", "item_id")
        on = clinicians & t.on_duty(item.service_id)
        targets = on or clinicians
        now = ctx.now_ms()
        item.escalated_ts = now
        await t._save(item)
        frame = {"op": "escalation", "item": t.view(item, now), "note": req.note,
                 "by": session.user_id, "by_pseudonym": session.pseudonym}
        sent = t.push(targets, frame)
        await audit(session.user_id, "triage.escalate", member=item.subject_user, service=item.service_id,
                    details={"item_id": item.item_id, "clinicians": len(targets)})
        log.info("triage.escalated", item_id=item.item_id, clinicians=len(targets), connections=sent)
        return {"item": t.view(item, now), "escalated_to": sorted(targets), "on_duty": bool(on)}

    # -- duty and rota ---------------------------------------------------------------------------
    def duty_list(service_id: str) -> List[Dict[str, Any]]:
        marked = t.marked.get(service_id, {})
        out = []
        for user_id in sorted(t.on_duty(service_id)):
            out.append({"user_id": user_id, "pseudonym": accounts.pseudonym_of(user_id) or "",
                        "role": services.role(service_id, user_id),
                        "how": "marked" if user_id in marked else "scheduled", "since_ts": marked.get(user_id)})
        return out

    async def duty(conn: Any, req: P.Duty) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        require_staff(session, service_id)
        me = session.user_id
        marks = t.marked.setdefault(service_id, {})
        changed = (me in marks) != req.on
        if changed:
            now = ctx.now_ms()
            async with t._write:
                async with ctx.db.engine.begin() as c:
                    await c.execute(triage_duty.delete().where((triage_duty.c.service_id == service_id)
                                                               & (triage_duty.c.user_id == me)))
                    if req.on:
                        await c.execute(triage_duty.insert().values(service_id=service_id, user_id=me, since_ts=now))
            if req.on:
                marks[me] = now
            else:
                marks.pop(me, None)
            await audit(me, "triage.duty_on" if req.on else "triage.duty_off", service=service_id)
            log.info("triage.duty", service_id=service_id, on=req.on, on_duty=len(t.on_duty(service_id)))
        return {"service_id": service_id, "on": req.on, "changed": changed, "on_duty": duty_list(service_id)}

    async def rota(conn: Any, req: P.Rota) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        require_staff(session, service_id)
        settings = t.settings(service_id)
        fallback = sorted(t.fallback_users(service_id))
        return {"service_id": service_id, "now_ts": ctx.now_ms(), "on_duty": duty_list(service_id),
                "anyone_on_duty": t.anyone_on_duty(service_id), "schedule": settings.get("rota_schedule") or [],
                "fallback": settings.get("rota_fallback") or [],
                "fallback_users": [{"user_id": u, "pseudonym": accounts.pseudonym_of(u) or ""} for u in fallback]}

    async def scan(conn: Any, req: P.TriageScan) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        require_staff(session, service_id)
        return await t.scan(service_id)

    register_handlers({
        P.Report: report, P.MyReports: my_reports, P.Queue: queue, P.QueueClaim: claim,
        P.QueueRelease: release, P.QueueResolve: resolve, P.QueueEscalate: escalate,
        P.Duty: duty, P.Rota: rota, P.TriageScan: scan,
    })
