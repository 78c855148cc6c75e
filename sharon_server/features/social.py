"""Mentions, hashtags, notifications and full-text search: one observer over every event.

The ``_SocialObserver`` runs after the services tagger (which sets ``scratch["service"]``):

- ``prepare``: resolves ``@pseudonym`` mentions (case-insensitively) to members who may see
  the room -- members of the room's service, or, for rooms outside services, members
  joined to the room -- and writes them into the signed content as ``"mentions": [user_id]``
  (a client cannot forge the key: it is always replaced); extracts ``#tags`` for rooms of
  a service; collects the text to index.
- ``derive``: tag rows, the search document, and notification rows (``scratch["notify"]``
  plus mentions; never the sender; one per member per event), all in the event's own
  transaction.
- ``committed``: counts tags into the per-service ``Trending`` windows and pushes each
  notification to the member's live connections.

Trending: counts over the last ``SHARON_TRENDING_WINDOW_S`` seconds (default 24 h) of
``origin_server_ts`` in hour buckets (a sixtieth of the window when shorter), rebuilt at
start-up from ``social_tags``; only staff-approved tags trend, and only when the service's
``trending`` setting is on.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Set, Tuple

from twisted.logger import Logger

from protocol import social as P
from protocol.canonical_json import decode_stored
from protocol.errors import Forbidden
from protocol.text import extract_hashtags, extract_mentions
from rooms.trending import Trending
from sharon_server.event_types import Derived, EventType, SendContext
from sharon_server.ops import register_handlers
from sharon_server.storage.social import SocialStore, ensure_search_index

__all__ = ["install", "Social"]

log = Logger(namespace="sharon.social")

DEFAULT_WINDOW_S = 24 * 3600


def _window_ms(config: Any) -> int:
    value = getattr(config, "trending_window_s", None) or os.environ.get("SHARON_TRENDING_WINDOW_S")
    try:
        seconds = int(value) if value is not None else DEFAULT_WINDOW_S
    except ValueError:
        seconds = DEFAULT_WINDOW_S
    return max(60, seconds) * 1000


class Social:
    """The feature's state: the mention index, trending windows, approvals, unread counts."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.rooms = ctx.rooms
        self.accounts = ctx.accounts
        self.services = ctx.services
        self.hub = ctx.hub
        self.now_ms = ctx.now_ms
        self.store = SocialStore(ctx.db)
        self.window_ms = _window_ms(ctx.config)
        self.bucket_ms = min(3600 * 1000, max(1000, self.window_ms // 60))
        self.trending: Dict[str, Trending] = {}
        self.approved: Dict[str, Set[str]] = {}
        self.unread: Dict[str, int] = {}
        self._by_key: Dict[str, str] = {}
        self._indexed = -1
        extras = getattr(ctx, "extras", None)
        self.notify_filters: List[Any] = extras.setdefault("notify_filters", []) if extras is not None else []
        """``f(row, texts) -> None | "quiet" | "drop"`` (added by later features: member controls)."""

    # -- start-up ----------------------------------------------------------------------
    async def load(self) -> None:
        """Create the full-text index if new; rebuild trending, approvals and unread counts."""
        if await ensure_search_index(self.ctx.db.engine, self.ctx.db.dialect):
            log.info("social.search_index_built")
        now = self.now_ms()
        self.trending.clear()
        for service_id, tag, ts in await self.store.tags_since(now - self.window_ms):
            self.window(service_id).add(tag, ts)
        self.approved.clear()
        for service_id, tag in await self.store.approvals():
            self.approved.setdefault(service_id, set()).add(tag)
        self.unread = await self.store.all_unread_counts()
        log.info("social.loaded", services=len(self.trending), window_ms=self.window_ms)

    def window(self, service_id: str) -> Trending:
        window = self.trending.get(service_id)
        if window is None:
            window = self.trending[service_id] = Trending(self.window_ms, self.bucket_ms)
        return window

    # -- mentions ------------------------------------------------------------------------
    def user_for(self, pseudonym: str) -> Optional[str]:
        """The user whose pseudonym is ``pseudonym`` (case-insensitive), or None."""
        names = self.accounts.pseudonyms
        if self._indexed != len(names):
            self._by_key = {p.casefold(): u for u, p in names.items()}
            self._indexed = len(names)
        return self._by_key.get(pseudonym.casefold())

    def may_mention(self, room_id: str, service_id: Optional[str], target: str) -> bool:
        """True if ``target`` may see the room: in its service, or joined to a room outside services."""
        if service_id is not None:
            return self.services.is_member(service_id, target)
        state = self.rooms.rooms.get(room_id)
        return state is not None and state.membership(target) == "join"

    # -- notifications -----------------------------------------------------------------------
    def notification(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """The client form of a notification row: opaque IDs and the actor's pseudonym only.
        A notice (no event) has ``room_id``/``event_id``/``actor`` null and its ``notice``."""
        payload = row.get("payload")
        if payload is not None:
            return {"pos": row["pos"], "reason": row["reason"], "room_id": None, "event_id": None,
                    "actor": None, "actor_pseudonym": "", "ts": row["ts"], "read": bool(row["is_read"]),
                    "notice": json.loads(payload)}
        return {"pos": row["pos"], "reason": row["reason"], "room_id": row["room_id"],
                "event_id": row["event_id"], "actor": row["actor"],
                "actor_pseudonym": self.accounts.pseudonym_of(row["actor"]) or "",
                "ts": row["ts"], "read": bool(row["is_read"])}

    def push(self, rows: List[Dict[str, Any]], quiet: Any = ()) -> None:
        """Count the new notifications as unread and push them to live connections
        (except to the users in ``quiet``, or whom a notification filter quiets, e.g. a
        member on a break: stored and counted, not pushed)."""
        for row in rows:
            user_id = row["user_id"]
            self.unread[user_id] = self.unread.get(user_id, 0) + 1
            if user_id in quiet or (self.notify_filters and any(
                    f(row, []) == "quiet" for f in self.notify_filters)):  # e.g. on a break
                continue
            conns = self.hub.user_conns.get(user_id)
            if not conns:
                continue
            frame = P.notification_frame(dict(self.notification(row), unread=self.unread[user_id]))
            for conn in list(conns):
                conn.reply(frame)

    # -- visibility ------------------------------------------------------------------------
    def require_member(self, service_id: str, user_id: str) -> None:
        """Forbidden unless the user is a member of the service (or a server admin)."""
        self.services.require_service(service_id)
        if not self.services.is_member(service_id, user_id) and not self.services.is_admin(user_id):
            raise Forbidden("you are not a member of this service")

    def require_staff(self, service_id: str, user_id: str) -> None:
        """Forbidden unless the user is staff of the service (or a server admin)."""
        self.services.require_service(service_id)
        if not self.services.is_staff(service_id, user_id):
            raise Forbidden("only staff of this service can do that")

    def visible_rooms(self, service_id: str, user_id: str) -> List[str]:
        """The service's rooms the user may read: public ones and those they are joined to."""
        out = []
        for room_id in self.services.rooms_of(service_id):
            state = self.rooms.rooms[room_id]
            if state.join_rule() == "public" or state.membership(user_id) == "join":
                out.append(room_id)
        return out

    def client_events(self, rows: List[Tuple[Any, ...]]) -> List[Dict[str, Any]]:
        """Client events of ``(pos, event_id, json, ...)`` rows."""
        return [self.rooms.client_event(decode_stored(r[2]), r[1], r[0]) for r in rows]


def _texts(ctx: SendContext) -> List[str]:
    texts = ctx.scratch.get("text")
    if texts is None:
        get = ctx.content.get
        texts = (get("title"), get("body"))
    return [t for t in texts if type(t) is str and t]


def _filter_notifications(filters: List[Any], rows: List[Dict[str, Any]], texts: List[str],
                          scratch: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Apply ``ctx.extras["notify_filters"]``: ``f(row, texts)`` returns None (store and push),
    ``"quiet"`` (store, do not push) or ``"drop"`` (neither)."""
    kept = []
    for row in rows:
        verdicts = {f(row, texts) for f in filters}
        if "drop" in verdicts:
            continue
        if "quiet" in verdicts:
            scratch.setdefault("social_quiet", set()).add(row["user_id"])
        kept.append(row)
    return kept


class _SocialObserver(EventType):
    """Mentions, tags, search documents and notifications for every event sent."""

    def __init__(self, social: Social) -> None:
        self.s = social

    def prepare(self, ctx: SendContext) -> None:
        if ctx.state_key is not None and "text" not in ctx.scratch:
            return
        texts = _texts(ctx)
        ctx.scratch["social_texts"] = texts
        ctx.content.pop("mentions", None)
        if not texts:
            return
        # The scans below are regular-expression passes over the text: skip them (the
        # common case) when the text cannot hold a mention or a tag (decision 0011).
        joined = texts[0] if len(texts) == 1 else "\n".join(texts)
        service_id = ctx.scratch.get("service")
        if "@" in joined:
            sender = ctx.session.user_id
            mentioned: List[str] = []
            for name in extract_mentions(texts):
                target = self.s.user_for(name)
                if target is None or target == sender or target in mentioned:
                    continue
                if self.s.may_mention(ctx.room_id, service_id, target):
                    mentioned.append(target)
            if mentioned:
                ctx.content["mentions"] = mentioned
                ctx.scratch["social_mentions"] = mentioned
        if service_id is not None and "#" in joined:
            tags = extract_hashtags(texts)
            if tags:
                ctx.scratch["social_tags"] = tags

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        scratch = ctx.scratch
        texts = scratch.get("social_texts")
        out: Derived = []
        if texts:
            out.append((self.s.store.insert_doc, [
                {"pos": pos, "room_id": ctx.room_id, "event_id": event_id,
                 "body": texts[0] if len(texts) == 1 else "\n".join(texts)}]))
            self.s.store.document_derived(pos)
        tags = scratch.get("social_tags")
        if tags:
            service_id = scratch["service"]
            ts = event["origin_server_ts"]
            out.append((self.s.store.insert_tag, [
                {"service_id": service_id, "tag": t, "pos": pos, "room_id": ctx.room_id,
                 "event_id": event_id, "ts": ts} for t in tags]))
        notify = scratch.get("notify")
        mentions = scratch.get("social_mentions")
        if not notify and not mentions:
            return out
        ts = event["origin_server_ts"]
        sender = ctx.session.user_id
        wanted: List[Tuple[str, str]] = list(notify or ())
        wanted += [(u, "mention") for u in mentions or ()]
        rows: List[Dict[str, Any]] = []
        seen: Set[str] = set()
        for user_id, reason in wanted:
            if user_id == sender or user_id in seen or type(reason) is not str \
                    or self.s.accounts.pseudonym_of(user_id) is None:
                continue
            seen.add(user_id)
            rows.append({"user_id": user_id, "pos": pos, "reason": reason, "room_id": ctx.room_id,
                         "event_id": event_id, "actor": sender, "ts": ts, "is_read": False})
        filters = self.s.notify_filters
        if rows and filters:  # member controls: blocks, mute words, breaks
            rows = _filter_notifications(filters, rows, texts or [], ctx.scratch)
        if rows:
            out.append((self.s.store.insert_notification, rows))
            ctx.scratch["social_notified"] = rows
        return out

    def committed(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> None:
        if ctx.scratch.get("social_texts"):
            self.s.store.documents_committed()
        tags = ctx.scratch.get("social_tags")
        if tags:
            window = self.s.window(ctx.scratch["service"])
            for tag in tags:
                window.add(tag, event["origin_server_ts"])
        rows = ctx.scratch.get("social_notified")
        if rows:
            self.s.push(rows, ctx.scratch.get("social_quiet", ()))


def install(ctx: Any) -> None:
    """Register the observer, the start-up loader and the operations."""
    social = Social(ctx)
    ctx.extras["social"] = social
    ctx.rooms.observers.append(_SocialObserver(social))
    ctx.add_loader(social.load)
    from sharon_server.features.social_notices import Notifier

    notifier = Notifier(social)  # notices (sanctions, decisions, outcomes) in the feed
    ctx.notifier = ctx.extras["notifier"] = notifier
    ctx.add_loader(notifier.load)
    from sharon_server.features import social_ops

    register_handlers(social_ops.handlers(social))
