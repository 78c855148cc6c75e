"""Marks on events (#6): hide, unhide, redact and content warnings, and the per-viewer
history filter that shows them (a mixin of ``Moderation``).

A mark is a row in ``mod_marks`` and an entry in memory; the stored event is never changed
(it stays signed), so a redaction is enforced by the filter for everyone but staff, and the
original stays readable by staff and in the audit trail.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

from twisted.logger import Logger

from protocol import moderation as P
from protocol.errors import NotFound, SharonError

__all__ = ["Marks", "filter_content_listings"]

log = Logger(namespace="sharon.moderation")

_RELATION_KEYS = ("thread_id", "post_id", "target")
"""Content keys a placeholder keeps, so clients can still place it in its thread."""


class Marks:
    """What moderators did to events; needs the attributes ``Moderation`` sets."""

    ctx: Any
    rooms: Any
    services: Any
    hub: Any
    store: Any
    marks: Dict[str, Dict[str, Any]]
    _flags_cache: Any = None
    """``(risk feature, its synchronous flag lookup or None)``, resolved once."""

    # -- who is staff where --------------------------------------------------------------------
    def service_for(self, room_id: str) -> Optional[str]:
        """The service a room belongs to; a service's own room (kind ``space``) belongs to itself.
        The staff feature's ``service_for`` is the one definition (this is its fallback)."""
        staff = self.ctx.extras.get("staff")
        if staff is not None:
            return staff.service_for(room_id)
        return room_id if self.services.is_service(room_id) else self.services.service_of(room_id)

    # -- marks on events --------------------------------------------------------------------
    def is_hidden(self, event_id: str) -> bool:
        """True if moderators hid or redacted the event."""
        mark = self.marks.get(event_id)
        return mark is not None and (mark["hidden"] or mark["redacted"])

    def _sync_flags(self) -> Any:
        """The risk feature's flag lookup if it is synchronous (filters cannot await), else
        None; resolved once per risk feature object (this runs for every event of a page)."""
        risk = self.ctx.extras.get("risk")
        cached = self._flags_cache
        if cached is not None and cached[0] is risk:
            return cached[1]
        lookup = getattr(risk, "flags_for", None) if risk is not None else None
        if lookup is None or inspect.iscoroutinefunction(lookup):
            lookup = None
        self._flags_cache = (risk, lookup)
        return lookup

    def event_filter(self, viewer: str, room_id: str, event: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """History/replay as ``viewer`` may see it: placeholders for peers, notes for staff."""
        mark = self.marks.get(event["event_id"])
        if mark is None and event["type"] == "ps.edit":
            target = event["content"].get("target")  # an edit of a hidden post is hidden with it
            mark = self.marks.get(target) if type(target) is str else None
        lookup = self._sync_flags()
        if mark is None and lookup is None:
            return event
        service = self.service_for(room_id)
        staff = self.services.is_staff(service, viewer)
        if staff:
            notes: Dict[str, Any] = {}
            if mark is not None:
                notes.update(hidden=mark["hidden"], redacted=mark["redacted"], content_warning=mark["cw"],
                             rule=self._rule_or_stub(service, mark["rule"]), reason=mark["reason"],
                             by=mark["by_user"])
            flags = None
            if lookup is not None:
                try:
                    flags = lookup(event["event_id"])
                except Exception:  # noqa: BLE001 - notes are best effort
                    flags = None
            if flags:
                notes["flags"] = flags
            if not notes:
                return event
            out = dict(event, moderation=notes)
            if mark is not None and mark["cw"]:
                out["content_warning"] = mark["cw"]
            return out
        if mark is None:
            return event
        out = dict(event)
        if mark["cw"]:
            out["content_warning"] = mark["cw"]
        if mark["redacted"] or (mark["hidden"] and viewer != event["sender"]):
            text = P.REDACTED_TEXT if mark["redacted"] else P.HIDDEN_TEXT
            content = {k: event["content"][k] for k in _RELATION_KEYS if k in event["content"]}
            content["body"] = text
            out["content"] = content
            out["moderation"] = {"hidden": bool(mark["hidden"]), "redacted": bool(mark["redacted"])}
        elif mark["hidden"]:  # the author still sees their own post, and why it is hidden
            out["moderation"] = {"hidden": True, "redacted": False,
                                 "rule": self._rule_or_stub(service, mark["rule"]), "reason": mark["reason"]}
        return out

    async def set_mark(self, actor: str, room_id: str, event_id: str, author: str, action: str, *,
                       rule: Optional[str], reason: Optional[str], hidden: Optional[bool] = None,
                       redacted: Optional[bool] = None, cw: Optional[str] = None) -> Dict[str, Any]:
        """Record a moderator's action on an event, tell the room and the author, audit it."""
        old = self.marks.get(event_id) or {"hidden": False, "redacted": False, "cw": None}
        mark = {"event_id": event_id, "room_id": room_id,
                "hidden": old["hidden"] if hidden is None else hidden,
                "redacted": old["redacted"] or bool(redacted),
                "cw": cw if cw is not None else old["cw"],
                "rule": rule if rule is not None else old.get("rule"),
                "reason": reason if reason is not None else old.get("reason"),
                "by_user": actor, "updated_ts": self.now_ms()}
        await self.store.put_mark(mark)
        self.marks[event_id] = mark
        if mark["hidden"] or mark["redacted"]:
            await self.store.unindex(event_id, purge=bool(mark["redacted"]))
        elif old["hidden"]:
            await self.store.reindex(event_id)  # unhidden: found by search again
        service = self.service_for(room_id)
        etype = {"hide": P.MOD_HIDE, "unhide": P.MOD_UNHIDE, "redact": P.MOD_REDACT, "cw": P.MOD_CW}[action]
        content: Dict[str, Any] = {"target": event_id}
        if action == "cw":
            content["category"] = mark["cw"]
        announced = await self.announce(room_id, etype, content, actor)
        rule_form = self._rule_or_stub(service, rule)
        notice = {
            "hide": "A moderator has hidden your post from others while it is reviewed.",
            "unhide": "A moderator has made your post visible again.",
            "redact": "A moderator has removed your post.",
            "cw": "A moderator has added a content warning to your post, so others can choose to see it.",
        }[action]
        if rule_form is not None:
            notice += f" (rule: {rule_form['title']} - {rule_form['plain_words']})"
        if reason:
            notice += f" The reason: {reason}"
        if author != actor:
            await self.tell(author, {"op": "moderated", "action": action, "room_id": room_id, "event_id": event_id,
                               "rule": rule_form, "reason": reason, "notice": notice})
        await self.audit(actor, f"moderation.{action}", member=author, service=service,
                         details={"room_id": room_id, "event_id": event_id, "rule": rule, "reason": reason,
                                  "category": mark["cw"] if action == "cw" else None})
        log.info("moderation.marked", action=action, room_id=room_id, event_id=event_id)
        return {"event_id": event_id, "room_id": room_id, "hidden": mark["hidden"], "redacted": mark["redacted"],
                "content_warning": mark["cw"], "announced": announced}

    async def announce(self, room_id: str, etype: str, content: Dict[str, Any], actor: str) -> Optional[str]:
        """Tell the room's live clients; returns the ``ps.mod.*`` event ID, or None.

        When the acting moderator is joined to the room (a visible member there, by their
        own choice) the ``ps.mod.*`` event is sent as them. Otherwise nobody else is made to
        speak for them: an ephemeral ``moderation`` push reaches the room's live clients
        (observing staff included), and history shows the mark either way.
        """
        state = self.rooms.rooms.get(room_id)
        if state is not None and state.membership(actor) == "join":
            try:
                event_id, _, _ = await self.rooms.send_event(self.author_session(actor), room_id, etype, content)
                return event_id
            except SharonError as err:
                log.warn("moderation.announce_failed", room_id=room_id, code=err.code)
        frame = {"op": "moderation", "room_id": room_id, "type": etype, "content": content}
        for conn in list(self.hub.room_subs.get(room_id, ())):
            conn.reply(frame)
        return None

    async def hide(self, room_id: str, event_id: str, by: str, rule: Optional[str], reason: str) -> Dict[str, Any]:
        """Hide an event from peers (published for other features, e.g. triage's out-of-hours rule)."""
        row = await self.ctx.db.events.get_event(event_id)
        if row is None or row.room_id != room_id:
            raise NotFound(f"no event {event_id} in room {room_id}", "event_id")
        old = self.marks.get(event_id)
        if not by and old is not None and old["hidden"]:  # already hidden (by a moderator): leave it be
            return {"event_id": event_id, "room_id": room_id, "hidden": True, "redacted": old["redacted"],
                    "content_warning": old["cw"], "announced": None}
        by = by or "server"  # an automatic hide (e.g. out of hours) may have no acting person
        return await self.set_mark(by, room_id, event_id, row.sender, "hide", rule=rule, reason=reason, hidden=True)

    async def unhide_automatic(self, room_id: str, event_id: str, by: str, reason: str) -> bool:
        """Undo an automatic hide (``hide`` with no acting person, e.g. after reports out of
        hours) once staff found nothing wrong; a hide or redaction by a moderator stays. True
        if the event was shown again."""
        mark = self.marks.get(event_id)
        if mark is None or not mark["hidden"] or mark["redacted"] or mark.get("by_user") != "server":
            return False
        row = await self.ctx.db.events.get_event(event_id)
        if row is None or row.room_id != room_id:
            return False
        await self.set_mark(by, room_id, event_id, row.sender, "unhide", rule=None, reason=reason, hidden=False)
        return True


def filter_content_listings(ctx: Any, mod: Any) -> None:
    """Forum, wall, timeline and blog listings (and a thread's replies, a post's comments)
    render events from the content feature's own tables, not through ``history``: pass them
    through the room service's event filters too (the marks, then member controls), so a
    hidden thread is a placeholder in ``threads`` as it is in ``history``, and a blocked
    member's thread is left out. (A wrapper, because the content feature has no filter seam of its own.)"""
    content = ctx.extras.get("content")
    original = getattr(content, "render", None)
    if original is None:
        return

    filters = mod.rooms.event_filters  # moderation's marks first, then member controls (blocks, CWs)

    def viewed(me: str, item: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        room_id = item.get("room_id", "")
        for event_filter in filters:
            item = event_filter(me, room_id, item)
            if item is None:
                return None
        return item

    async def render(rows: List[Any], me: str) -> List[Dict[str, Any]]:
        items = await original(rows, me)
        return [e for e in (viewed(me, item) for item in items) if e is not None]

    content.render = render
    original_page = getattr(content, "related_page", None)
    if original_page is None:
        return

    async def related_page(parent_id: str, rel: str, from_pos: Optional[int], limit: int,
                           me: str) -> Dict[str, Any]:
        page = await original_page(parent_id, rel, from_pos, limit, me)
        page["events"] = [e for e in (viewed(me, e) for e in page["events"]) if e is not None]
        return page

    content.related_page = related_page
