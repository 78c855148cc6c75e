"""Operation handlers of moderation: held posts, pre-moderating a member, actions on events."""

from __future__ import annotations

import json
from typing import Any, Dict

from twisted.logger import Logger

from protocol import moderation as P
from protocol.errors import AlreadyDecided, BadField, NotFound, NotInRoom, SharonError
from sharon_server.ops import register_handlers

__all__ = ["register"]

log = Logger(namespace="sharon.moderation")

_THREAD_STATE = "ps.thread.state"


def register(mod: Any) -> None:
    """Register the held-post and event-action handlers of ``mod`` (a ``Moderation``)."""
    rooms, services, store = mod.rooms, mod.services, mod.store

    # -- held posts --------------------------------------------------------------------
    async def held_mine(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        rows = await store.held_of_author(session.user_id, req.limit)
        return {"held": [mod.held_form(r, staff=False) for r in rows]}

    async def held_list(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        await mod.require_staff(service_id, session.user_id)
        rows = await store.held_pending([service_id], req.limit)
        return {"held": [mod.held_form(r, staff=True) for r in rows]}

    async def held_row(session: Any, held_id: str) -> Dict[str, Any]:
        row = await store.held(held_id)
        if row is None:
            raise NotFound(f"no held post {held_id}", "held_id")
        await mod.require_staff(row["service_id"], session.user_id)
        if row["status"] != "held":
            raise AlreadyDecided(f"this post was already {row['status']}", "held_id")
        return row

    async def held_approve(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        row = await held_row(session, req.held_id)
        now = mod.now_ms()
        if not await store.decide_held(row["held_id"], "approved", session.user_id, now, None, None, None):
            raise AlreadyDecided("this post was already decided", "held_id")
        try:
            event_id, pos, _ = await rooms.send_event(
                mod.author_session(row["author"]), row["room_id"], row["etype"], json.loads(row["content"]),
                row["txn_id"], row["state_key"], approved=True)
        except SharonError:
            await store.reopen_held(row["held_id"])
            raise
        await store.set_held_event(row["held_id"], event_id)
        counts = mod.count_approved(row["service_id"], row["author"])
        if counts is not None:
            await store.put_premod(row["service_id"], row["author"], counts[0], counts[1])
        await mod.tell(row["author"], {"op": "held_approved", "held_id": row["held_id"], "room_id": row["room_id"],
                                 "event_id": event_id, "pos": pos,
                                 "notice": "A moderator has checked your post and it is now visible."})
        await mod.audit(session.user_id, "moderation.approve", member=row["author"], service=row["service_id"],
                        details={"held_id": row["held_id"], "room_id": row["room_id"], "event_id": event_id})
        await mod.resolve_triage(row["service_id"], row["held_id"], "no_action", session.user_id)
        log.info("moderation.approved", held_id=row["held_id"], event_id=event_id)
        return {"held_id": row["held_id"], "event_id": event_id, "pos": pos}

    async def held_reject(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        row = await held_row(session, req.held_id)
        rule = mod.rule(row["service_id"], req.rule) if req.rule is not None else None
        if not await store.decide_held(row["held_id"], "rejected", session.user_id, mod.now_ms(),
                                       req.rule, req.reason, None):
            raise AlreadyDecided("this post was already decided", "held_id")
        notice = "A moderator has not published your post. You can change it and send it again."
        if rule is not None:
            notice += f" (rule: {rule['title']} - {rule['plain_words']})"
        notice += f" The reason: {req.reason}"
        await mod.tell(row["author"], {"op": "held_rejected", "held_id": row["held_id"], "room_id": row["room_id"],
                                 "type": row["etype"], "content": json.loads(row["content"]),
                                 "reason": req.reason, "rule": rule, "notice": notice})
        await mod.audit(session.user_id, "moderation.reject", member=row["author"], service=row["service_id"],
                        details={"held_id": row["held_id"], "room_id": row["room_id"], "rule": req.rule,
                                 "reason": req.reason})
        await mod.resolve_triage(row["service_id"], row["held_id"], "action_taken", session.user_id)
        return {"held_id": row["held_id"], "status": "rejected"}

    async def premod_member(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        service_id, target = str(req.service_id), str(req.user_id)
        await mod.require_staff(service_id, session.user_id)
        if not services.is_member(service_id, target):
            raise NotFound(f"{target} is not a member of this service", "user_id")
        entry = mod.premod.setdefault((service_id, target), [None, 0])
        entry[0] = req.posts
        await store.put_premod(service_id, target, entry[0], entry[1])
        await mod.audit(session.user_id, "moderation.premod", member=target, service=service_id,
                        details={"posts": req.posts})
        return {"service_id": service_id, "user_id": target, "posts": req.posts, "approved": entry[1]}

    # -- actions on events -------------------------------------------------------------------
    async def target(session: Any, event_id: str) -> Any:
        row = await mod.ctx.db.events.get_event(event_id)
        if row is None or row.state_key is not None:
            raise NotFound(f"no message or post {event_id}", "event_id")
        await mod.require_staff(mod.service_for(row.room_id), session.user_id)
        return row

    async def apply_mark(conn: Any, req: Any, action: str, **flags: Any) -> Dict[str, Any]:
        """The one path of mod_hide, mod_unhide, mod_redact and mod_content_warning: staff of
        the event's service only; a rule given must be one of the service's rules."""
        session = conn.require_session()
        row = await target(session, req.event_id)
        rule = getattr(req, "rule", None)
        if rule is not None:
            mod.rule(mod.service_for(row.room_id), rule)
        return await mod.set_mark(session.user_id, row.room_id, row.event_id, row.sender, action,
                                  rule=rule, reason=req.reason, **flags)

    async def mod_hide(conn: Any, req: Any) -> Dict[str, Any]:
        return await apply_mark(conn, req, "hide", hidden=True)

    async def mod_unhide(conn: Any, req: Any) -> Dict[str, Any]:
        return await apply_mark(conn, req, "unhide", hidden=False)

    async def mod_redact(conn: Any, req: Any) -> Dict[str, Any]:
        return await apply_mark(conn, req, "redact", redacted=True)

    async def mod_content_warning(conn: Any, req: Any) -> Dict[str, Any]:
        return await apply_mark(conn, req, "cw", cw=req.category)

    async def mod_lock(conn: Any, req: Any) -> Dict[str, Any]:
        """Lock through the content feature's own ``ps.thread.state`` (staff, joined)."""
        session = conn.require_session()
        room_id = str(req.room_id)
        service = mod.service_for(room_id)
        await mod.require_staff(service, session.user_id)
        mod.rule(service, req.rule)
        if rooms.kinds.get(room_id) != "forum":
            raise BadField("room_id is not a forum", "room_id")
        state = rooms.rooms[room_id]
        if state.membership(session.user_id) != "join":
            raise NotInRoom("join the forum to lock its threads (locking is a visible act in the room)",
                            "room_id")
        event_id, pos, _ = await rooms.send_event(session, room_id, _THREAD_STATE, {"locked": req.locked},
                                                  state_key=req.thread_id)
        await mod.audit(session.user_id, "moderation.lock", service=service,
                        details={"room_id": room_id, "thread_id": req.thread_id, "locked": req.locked,
                                 "rule": req.rule, "reason": req.reason})
        return {"event_id": event_id, "pos": pos, "thread_id": req.thread_id, "locked": req.locked}

    async def mod_rules(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        services.require_service(service_id)
        if not services.is_member(service_id, session.user_id) and not services.is_admin(session.user_id):
            raise NotFound(f"no service {service_id} you belong to", "service_id")
        return {"service_id": service_id, "rules": mod.rules_of(service_id)}

    R = P.REQUESTS
    register_handlers({
        R["held_mine"]: held_mine, R["held_list"]: held_list, R["held_approve"]: held_approve,
        R["held_reject"]: held_reject, R["premod_member"]: premod_member,
        R["mod_hide"]: mod_hide, R["mod_unhide"]: mod_unhide, R["mod_redact"]: mod_redact,
        R["mod_content_warning"]: mod_content_warning, R["mod_lock"]: mod_lock, R["mod_rules"]: mod_rules,
    })
