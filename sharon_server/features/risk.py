"""Risk detection (#6): every new post and message passes the service's detectors.

An observer on every event sent through ``send_event``:

- ``prepare`` (synchronous, no I/O): assesses the event's text (``scratch["text"]``, else
  ``content.title`` and ``content.body``) with the detectors the service enables
  (``risk_detectors``, default ``["lexicon"]``) and puts the ``Assessment`` (or None) in
  ``ctx.scratch["risk"]``, where moderation and triage hold rules read it;
- ``derive``: a ``risk_flags`` row in the event's own transaction, only for hits;
- ``committed``: hits whose score reaches the service's ``risk_alert_threshold`` (per mille)
  go to the triage queue (``ctx.extras["triage"].add_item(kind="risk", ...)``) when that
  feature is installed, in the background.

A clean message costs one regex pass over its normalised text: no rows, no awaits.

Publishes ``ctx.extras["risk"]`` (a ``RiskService``: ``assess``, ``register_detector``,
``flags_for`` (synchronous, from a bounded in-memory cache), async ``flag_of`` and
``recent_flags``) and a member-card section with the member's recent flags.
The lexicon is the shipped ``sharon_server/data/risk_lexicon.toml`` with the file named by
``config.lexicon_path`` loaded over it (docs/risk-lexicon.md).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import inspect
import json
import tomllib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set

import sqlalchemy as sa
from twisted.logger import Logger

from protocol import risk as R
from protocol.errors import Forbidden
from sharon_server.event_types import Derived, EventType, SendContext
from sharon_server.ops import register_handlers
from sharon_server.storage.schema_safety_controls import risk_flags

__all__ = ["install", "RiskService", "load_lexicon"]

log = Logger(namespace="sharon.risk")

_LEXICON_ONLY = ["lexicon"]
"""The default ``risk_detectors``."""
MAX_RECENT = 50
MAX_CACHED = 50_000
"""Flags kept in memory for ``flags_for`` (history notes for staff)."""
MAX_BACKGROUND = 1000
"""Triage hand-overs in flight at once; beyond this a hand-over is logged and dropped."""


def load_lexicon(extra_path: str = "") -> R.Matcher:
    """The shipped lexicon, with ``extra_path`` (TOML, same format) merged over it."""
    text = importlib.resources.files("sharon_server").joinpath("data/risk_lexicon.toml").read_text("utf-8")
    phrases, patterns = R.parse_lexicon(tomllib.loads(text))
    if extra_path:
        with open(Path(extra_path).expanduser(), "rb") as f:
            doc = tomllib.load(f)
        more, more_patterns = R.parse_lexicon(doc)
        phrases.update(more)
        for name, weight in more_patterns.items():
            if name in doc.get("patterns", {}):
                patterns[name] = weight
    return R.Matcher(phrases, patterns)


def _texts(ctx: SendContext) -> List[str]:
    texts = ctx.scratch.get("text")
    if texts is None:
        texts = [ctx.content.get("title"), ctx.content.get("body")]
    return [t for t in texts if type(t) is str and t]


class RiskService:
    """The detectors and the flags store; ``ctx.extras["risk"]``."""

    def __init__(self, ctx: Any, matcher: R.Matcher) -> None:
        self.ctx = ctx
        self.services = ctx.services
        self.lexicon = R.LexiconDetector(matcher)
        self.detectors: Dict[str, Any] = {"lexicon": self.lexicon}
        self._background: Set["asyncio.Future[Any]"] = set()
        self.cache: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()

    # -- detectors ----------------------------------------------------------------------
    def register_detector(self, detector: Any) -> None:
        """Add a plug-in (``protocol.risk.Detector``); services enable it by name."""
        if not isinstance(detector, R.Detector):
            raise TypeError("a detector needs a name and assess(text, context)")
        self.detectors[detector.name] = detector

    def settings(self, service_id: Optional[str]) -> Mapping[str, Any]:
        if self.services is None:
            from protocol.spaces import DEFAULT_SETTINGS
            return DEFAULT_SETTINGS
        return self.services.settings(service_id)

    def assess(self, text: str, service_id: Optional[str] = None,
               context: Optional[Dict[str, Any]] = None) -> Optional[R.Assessment]:
        """Run the service's enabled detectors over ``text``; None when it is clean."""
        settings = self.settings(service_id)
        detectors = settings.get("risk_detectors", _LEXICON_ONLY)
        if detectors == _LEXICON_ONLY and not settings.get("risk_lexicon_extra") \
                and self.detectors["lexicon"] is self.lexicon:
            # the default (the shipped lexicon alone): no context dict, no combine
            return self.lexicon.matcher.assess(text)
        ctx = dict(context or {})
        ctx["service_id"] = service_id
        ctx["lexicon_extra"] = settings.get("risk_lexicon_extra")
        found = []
        for name in detectors:
            detector = self.detectors.get(name)
            if detector is None:
                continue
            try:
                found.append(detector.assess(text, ctx))
            except Exception as exc:  # a broken plug-in must not stop messages
                # the exception's type only: a plug-in's message may quote the text it was given
                log.warn("risk.detector_failed", detector=name, error=type(exc).__name__)
        return R.combine(found)

    # -- flags --------------------------------------------------------------------------
    @staticmethod
    def _flag(row: Any) -> Dict[str, Any]:
        return {"event_id": row.event_id, "room_id": row.room_id, "service_id": row.service_id,
                "sender": row.sender, "pos": row.pos, "ts": row.ts, "score": R.per_mille(row.score),
                "category": row.category, "detector": row.detector, "hits": json.loads(row.hits)}

    def flags_for(self, event_id: str) -> List[Dict[str, Any]]:
        """The flags of one event (``[]`` if it was clean), synchronously from memory: the
        newest MAX_CACHED flags are kept (loaded at start-up), enough for history notes."""
        flag = self.cache.get(event_id)
        return [dict(flag)] if flag is not None else []

    async def flag_of(self, event_id: str) -> Optional[Dict[str, Any]]:
        """The flag of any event, from storage (None if it was clean)."""
        t = risk_flags
        async with self.ctx.db.read_engine.connect() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.event_id == event_id))).first()
        return self._flag(row) if row is not None else None

    def remember(self, flag: Dict[str, Any]) -> None:
        self.cache[flag["event_id"]] = flag
        if len(self.cache) > MAX_CACHED:
            self.cache.popitem(last=False)

    async def load(self) -> None:
        """Cache the newest flags for ``flags_for``."""
        t = risk_flags
        async with self.ctx.db.read_engine.connect() as conn:
            rows = list(await conn.execute(sa.select(t).order_by(t.c.pos.desc()).limit(MAX_CACHED)))
        self.cache.clear()
        for row in reversed(rows):
            self.remember(self._flag(row))
        log.info("risk.flags_loaded", cached=len(self.cache))

    async def recent_flags(self, user_id: str, service_id: Optional[str] = None,
                           n: int = 10) -> List[Dict[str, Any]]:
        """A member's newest flags (in one service when given), newest first."""
        t = risk_flags
        query = sa.select(t).where(t.c.sender == user_id)
        if service_id is not None:
            query = query.where(t.c.service_id == service_id)
        query = query.order_by(t.c.pos.desc()).limit(max(1, min(n, MAX_RECENT)))
        async with self.ctx.db.read_engine.connect() as conn:
            return [self._flag(r) for r in await conn.execute(query)]

    async def card_section(self, service_id: str, user_id: str) -> Dict[str, Any]:
        """Member-card section: the member's recent flags in the service."""
        return {"recent_flags": await self.recent_flags(user_id, service_id, 10)}

    # -- triage hand-over -------------------------------------------------------------------
    def hand_over(self, service_id: Optional[str], room_id: str, event_id: str, sender: str,
                  assessment: R.Assessment) -> None:
        """Give a hit over the alert threshold to the triage queue, if there is one."""
        queue = self.ctx.extras.get("triage")
        add = getattr(queue, "add_item", None) if queue is not None else None
        if add is None and isinstance(queue, dict):
            add = queue.get("add_item")
        if add is None:
            return
        terms = sorted({h.category for h in assessment.hits})
        summary = (f"risk detector: {assessment.category}, score {assessment.score:.2f} "
                   f"({len(assessment.hits)} hit{'s' if len(assessment.hits) != 1 else ''}: {', '.join(terms)})")
        try:
            result = add(kind="risk", service_id=service_id, room_id=room_id, event_id=event_id,
                         subject_user=sender, category=assessment.category,
                         risk_score=assessment.score, summary=summary)
        except Exception as exc:
            log.warn("risk.triage_failed", event_id=event_id, error=repr(exc))
            return
        if inspect.isawaitable(result):
            if len(self._background) >= MAX_BACKGROUND:
                log.warn("risk.triage_backlog", event_id=event_id)
                if inspect.iscoroutine(result):
                    result.close()
                return
            task = asyncio.ensure_future(result)
            self._background.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: "asyncio.Future[Any]") -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warn("risk.triage_failed", error=repr(task.exception()))


class _RiskObserver(EventType):
    """Assess every new event's text; flag hits; hand strong ones to triage."""

    def __init__(self, risk: RiskService) -> None:
        self.r = risk

    def prepare(self, ctx: SendContext) -> None:
        if ctx.state_key is not None and "text" not in ctx.scratch:
            ctx.scratch["risk"] = None
            return
        texts = _texts(ctx)
        if not texts:
            ctx.scratch["risk"] = None
            return
        service_id = ctx.scratch.get("service")
        text = texts[0] if len(texts) == 1 else "\n".join(texts)
        ctx.scratch["risk"] = self.r.assess(text, service_id, {
            "room_id": ctx.room_id, "sender": ctx.session.user_id, "etype": ctx.etype, "kind": ctx.kind})

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        found = ctx.scratch.get("risk")
        if found is None:
            return []
        row = {
            "event_id": event_id, "room_id": ctx.room_id, "service_id": ctx.scratch.get("service"),
            "sender": ctx.session.user_id, "pos": pos, "ts": event["origin_server_ts"],
            "score": found.score, "category": found.category, "detector": found.detector,
            "hits": json.dumps([h.as_dict() for h in found.hits], separators=(",", ":")),
        }
        ctx.scratch["risk_row"] = row
        return [(risk_flags.insert(), [row])]

    def committed(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> None:
        found = ctx.scratch.get("risk")
        if found is None:
            return
        service_id = ctx.scratch.get("service")
        row = ctx.scratch.get("risk_row")
        if row is not None:
            self.r.remember(dict(row, score=R.per_mille(row["score"]), hits=json.loads(row["hits"])))
        log.info("risk.flagged", event_id=event_id, room_id=ctx.room_id, service_id=service_id,
                 category=found.category, score=found.score, hits=len(found.hits))
        threshold = self.r.settings(service_id).get("risk_alert_threshold", 500)
        if R.over_threshold(found.score, threshold):
            self.r.hand_over(service_id, ctx.room_id, event_id, ctx.session.user_id, found)


def install(ctx: Any) -> None:
    """Load the lexicon, register the observer and publish the risk service."""
    path = getattr(ctx.config, "lexicon_path", "") or ""
    matcher = load_lexicon(path)
    risk = RiskService(ctx, matcher)
    ctx.extras["risk"] = risk
    ctx.rooms.observers.append(_RiskObserver(risk))
    ctx.extras.setdefault("member_card_sections", []).append(risk.card_section)
    ctx.add_loader(risk.load)
    log.info("risk.lexicon_loaded", phrases=len(matcher), extra_file=bool(path))

    services = ctx.services

    def require_staff(user_id: str, service_id: str) -> None:
        if services is None:
            raise Forbidden("risk detection is per service, and this server has none")
        services.require_service(service_id)
        if not services.is_staff(service_id, user_id):
            raise Forbidden("only staff of this service can do that", "service_id")

    async def risk_assess(conn: Any, req: R.RiskAssess) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        require_staff(session.user_id, service_id)
        found = risk.assess(req.text, service_id, {"sender": session.user_id, "etype": "risk_assess"})
        threshold = risk.settings(service_id).get("risk_alert_threshold", 500)
        if found is None:
            return {"flagged": False, "score": 0, "category": None, "hits": [], "alert": False}
        return dict(found.as_dict(), flagged=True, alert=R.over_threshold(found.score, threshold))

    async def list_flags(conn: Any, req: R.RiskFlags) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        require_staff(session.user_id, service_id)
        t = risk_flags
        query = sa.select(t).where(t.c.service_id == service_id)
        if req.user_id is not None:
            query = query.where(t.c.sender == str(req.user_id))
        query = query.order_by(t.c.pos.desc()).limit(req.limit)
        async with ctx.db.read_engine.connect() as c:
            flags = [risk._flag(r) for r in await c.execute(query)]  # noqa: SLF001
        for flag in flags:
            flag["sender_pseudonym"] = ctx.accounts.pseudonym_of(flag["sender"]) or ""
        return {"flags": flags}

    register_handlers({R.RiskAssess: risk_assess, R.RiskFlags: list_flags})
