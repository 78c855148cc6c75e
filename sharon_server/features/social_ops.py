"""Operation handlers of the social feature (notifications, search, tags, trending)."""

from __future__ import annotations

from typing import Any, Dict, List

from protocol import social as P
from protocol.errors import BadField, NotInRoom
from sharon_server.storage.social import fts_terms

TRENDING_TOP = 10
CANDIDATES_TOP = 50

__all__ = ["handlers"]


def handlers(social: Any) -> Dict[type, Any]:
    """The request type -> handler map for ``register_handlers``."""
    rooms, services = social.rooms, social.services

    async def notifications(conn: Any, req: P.Notifications) -> Dict[str, Any]:
        session = conn.require_session()
        rows, unread = await social.store.notifications(session.user_id, req.before, req.limit, req.unread_only)
        social.unread[session.user_id] = unread
        return {"notifications": [social.notification(r) for r in rows], "unread": unread,
                "next": rows[-1]["pos"] if len(rows) == req.limit else None}

    async def notifications_read(conn: Any, req: P.NotificationsRead) -> Dict[str, Any]:
        session = conn.require_session()
        unread = await social.store.mark_read(session.user_id, req.upto)
        social.unread[session.user_id] = unread
        return {"unread": unread}

    async def search(conn: Any, req: P.Search) -> Dict[str, Any]:
        session = conn.require_session()
        terms = social_terms(req.query)
        joined = set(rooms.joined_rooms(session.user_id))
        if req.room_id is not None:
            room_id = str(req.room_id)
            if room_id not in joined:
                raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
            joined = {room_id}
        if req.service_id is not None:
            service_id = str(req.service_id)
            joined = {r for r in joined if r == service_id or services.service_of(r) == service_id}
        rows = await social.store.search(terms, sorted(joined), req.before, req.limit)
        results: List[Dict[str, Any]] = []
        for row, event in zip(rows, social.client_events(rows)):
            content = event["content"]
            event = viewed(session.user_id, event)
            if event is None:
                continue  # the viewer blocks its sender or hides its CW category
            # a placeholder (moderation replaced the content) must not keep the original's snippet
            results.append({"event": event, "snippet": row[3] if event["content"] is content else None})
        return {"results": results, "next": rows[-1][0] if len(rows) == req.limit else None}

    def viewed(viewer: str, event: Dict[str, Any]) -> Any:
        """The search hit as ``viewer`` would see it in history: the room service's event
        filters (moderation placeholders, then member controls: blocks, CW hide/blur, mute
        words) apply, so search never shows what history would not. None: left out."""
        filters = rooms.event_filters
        room_id = event["room_id"]
        for event_filter in filters:
            event = event_filter(viewer, room_id, event)
            if event is None:
                return None
        return event

    def social_terms(query: str) -> List[str]:
        terms = fts_terms(query)
        if not terms:
            raise BadField("query has no words to search for", "query")
        return terms

    async def tag_posts(conn: Any, req: P.TagPosts) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        social.require_member(service_id, session.user_id)
        visible = social.visible_rooms(service_id, session.user_id)
        rows = await social.store.tag_posts(service_id, req.tag, visible, req.before, req.limit)
        me = session.user_id  # as history shows them: hidden posts as placeholders, blocks, CWs
        events = [e for e in (viewed(me, e) for e in social.client_events(rows)) if e is not None]
        return {"tag": req.tag, "events": events, "next": rows[-1][0] if len(rows) == req.limit else None}

    def counts(pairs: Any) -> List[Dict[str, Any]]:
        return [{"tag": t, "count": c} for t, c in pairs]

    async def trending(conn: Any, req: P.TrendingTags) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        social.require_member(service_id, session.user_id)
        if not services.settings(service_id).get("trending", True):
            return {"enabled": False, "tags": [], "window_ms": social.window_ms}
        approved = social.approved.get(service_id, set())
        top = social.window(service_id).top(social.now_ms(), TRENDING_TOP, approved.__contains__)
        return {"enabled": True, "tags": counts(top), "window_ms": social.window_ms}

    async def tag_candidates(conn: Any, req: P.TagCandidates) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        social.require_staff(service_id, session.user_id)
        approved = social.approved.get(service_id, set())
        top = social.window(service_id).top(social.now_ms(), CANDIDATES_TOP, lambda t: t not in approved)
        return {"candidates": counts(top), "approved": sorted(approved), "window_ms": social.window_ms}

    async def tag_approve(conn: Any, req: P.TagApprove) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        social.require_staff(service_id, session.user_id)
        await social.store.approve(service_id, req.tag, session.user_id, social.now_ms())
        social.approved.setdefault(service_id, set()).add(req.tag)
        return {"tag": req.tag}

    async def tag_revoke(conn: Any, req: P.TagRevoke) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        social.require_staff(service_id, session.user_id)
        revoked = await social.store.revoke(service_id, req.tag)
        social.approved.get(service_id, set()).discard(req.tag)
        return {"tag": req.tag, "revoked": revoked}

    return {
        P.Notifications: notifications, P.NotificationsRead: notifications_read, P.Search: search,
        P.TagPosts: tag_posts, P.TrendingTags: trending, P.TagCandidates: tag_candidates,
        P.TagApprove: tag_approve, P.TagRevoke: tag_revoke,
    }
