"""Notices in the notification feed: what the service tells a member that is not an event.

Sanctions and their lifting or appeal decision (moderation), held-post decisions
(moderation), report outcomes (triage) and discharges (invites) are pushed to the member's
live connections by those features; this module also records each one in the member's
notification feed (``notifications``), so a member who was offline finds it there with
the unread count, and a live member's badge moves (a ``notification`` push).

Published as ``ctx.notifier`` (and ``ctx.extras["notifier"]``) by the social feature:
``await notifier.notify(user_id, kind, payload)`` (``notice`` is the same). A notice row has
no event: its ``pos`` is a stream position reserved for it (``rooms.reserve_pos``) so it
pages among the event notifications by the same cursor; ``room_id``, ``event_id`` and
``actor`` are stored as ``""`` and shown as ``null``; ``payload`` is the notice's JSON.

Privacy: a notice never says who acted or who reported. The payload is reduced to the keys
a member may see (anything naming a moderator, a reporter or another member is dropped,
whatever the sending feature put in) and bounded in size. Notices are not subject to the
member's blocks, mute words or breaks: they come from the service, not from a peer.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import sqlalchemy as sa
from twisted.logger import Logger

from sharon_server.storage._sql import insert_for
from sharon_server.storage.schema_social import notifications

__all__ = ["Notifier", "NOTICE_KINDS", "MAX_NOTICE_BYTES", "PRIVATE_KEYS", "member_payload"]

log = Logger(namespace="sharon.social")

NOTICE_KINDS = ("sanction", "sanction_lifted", "appeal_decided", "held_approved", "held_rejected",
                "moderated", "report_outcome", "service_discharged")
"""The kinds the features send today (others are stored too: the kind is the sender's ``op``)."""

MAX_NOTICE_BYTES = 4096
"""Most bytes of JSON one notice keeps (a held post's content is dropped first, then all but
the plain-words notice)."""

MAX_KIND_CHARS = 40

PRIVATE_KEYS = frozenset({
    "actor", "by", "by_user", "issued_by", "lifted_by", "decided_by", "created_by", "closed_by",
    "moderator", "reporter", "reporters", "reported_by", "reporter_pseudonym", "pseudonym", "user_id",
    "discharged_by", "claimed_by", "resolved_by", "note", "lift_reason",
})
"""Keys that could name who acted or who reported (or echo staff notes): never in a notice."""


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in PRIVATE_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def member_payload(payload: Dict[str, Any]) -> Dict[str, Any]:
    """The notice as the member may see it: private keys dropped (at any depth), bounded."""
    out = _scrub(dict(payload))
    out.pop("op", None)
    if len(json.dumps(out, separators=(",", ":"))) > MAX_NOTICE_BYTES:
        out.pop("content", None)  # a rejected post's own text: the member has it in held_mine
    if len(json.dumps(out, separators=(",", ":"))) > MAX_NOTICE_BYTES:
        words = out.get("notice") if isinstance(out.get("notice"), str) else ""
        out = {"notice": words[:1000], "truncated": True}
    return out


class Notifier:
    """Records notices in the notification feed and pushes the new unread count."""

    def __init__(self, social: Any) -> None:
        self.social = social
        self.rooms = social.rooms
        self.accounts = social.accounts
        self._engine = social.ctx.db.engine
        self._insert = insert_for(social.ctx.db.dialect)(notifications)
        self.recorded = 0

    async def load(self) -> None:
        """Never reuse a stream position a stored notice took (no event was written there)."""
        n = notifications.c
        q = sa.select(sa.func.max(n.pos)).where(n.event_id == "")
        async with self.social.ctx.db.read_engine.connect() as conn:
            top = (await conn.execute(q)).scalar_one_or_none()
        if top:
            self.rooms.raise_pos_floor(int(top))

    async def notify(self, user_id: str, kind: str, payload: Dict[str, Any]) -> Optional[int]:
        """Record a notice for a local member and push the feed entry; its ``pos`` (None if
        the user is unknown)."""
        if self.accounts.pseudonym_of(user_id) is None or type(kind) is not str or not kind:
            return None
        kind = kind[:MAX_KIND_CHARS]
        body = member_payload(payload if isinstance(payload, dict) else {"notice": str(payload)})
        pos = self.rooms.reserve_pos()
        row = {"user_id": user_id, "pos": pos, "reason": kind, "room_id": "", "event_id": "", "actor": "",
               "ts": self.social.now_ms(), "is_read": False,
               "payload": json.dumps(body, separators=(",", ":"), sort_keys=True)}
        async with self._engine.begin() as conn:
            await conn.execute(self._insert, row)
        self.recorded += 1
        self.social.push([row])
        log.info("social.notice_recorded", kind=kind, pos=pos)
        return pos

    notice = notify
