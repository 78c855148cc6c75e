"""Content ops for blogs (drafts, publish, edit, feed), reactions and presents.

Drafts are private rows, never events: only their author lists, changes, deletes or
publishes them (another user's draft ID answers ``not_found``, as if it did not exist).
``blog_publish`` sends the ``ps.blog.post`` with the transaction ID ``blog_publish:<draft>``
so publishing the same draft twice returns the same event. The presents catalogue has
server-wide entries (server admins) and per-service entries (that service's admins).
"""

from __future__ import annotations

import secrets
from typing import Any, Dict, Optional

from protocol import content as P
from protocol.errors import BadField, Forbidden, NotFound, TooLarge

__all__ = ["handlers"]


def _draft_out(row: Any) -> Dict[str, Any]:
    return {"draft_id": row.draft_id, "room_id": row.room_id, "title": row.title, "body": row.body,
            "created_ts": row.created_ts, "updated_ts": row.updated_ts}


def _present_out(row: Any) -> Dict[str, Any]:
    return {"present_id": row.present_id, "name": row.name, "picture_media": row.picture_media,
            "service_id": row.service_id}


def handlers(api: Any) -> Dict[type, Any]:
    """The blog, reaction and present handlers over the shared ``ContentApi``."""
    rooms, services, store, ctx = api.rooms, api.services, api.store, api.ctx
    blogs = ("blog",)

    def check_blog_owner(session: Any, room_id: str) -> None:
        state = api.room(room_id, blogs, "blog posts")
        if state.creator != session.user_id:
            raise Forbidden("only the blog's owner publishes posts in it", "room_id")

    # -- blogs -------------------------------------------------------------------------------
    async def draft_save(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        me, now = session.user_id, ctx.now_ms()
        room_id = req.room_id
        if req.draft_id is not None and room_id is None:
            existing = await store.draft(req.draft_id, me)
            room_id = existing.room_id if existing is not None else None
        if room_id is not None:
            check_blog_owner(session, room_id)
            limit = rooms.body_limit(room_id, "blog")
            if len(req.body) > limit:
                raise TooLarge(f"body is {len(req.body)} characters; the limit for blog posts here is {limit}",
                               "body")
        values = {"room_id": room_id, "title": req.title, "body": req.body, "updated_ts": now}
        if req.draft_id is None:
            draft_id = "d_" + secrets.token_urlsafe(12)
            await store.insert_draft({"draft_id": draft_id, "user_id": me, "created_ts": now,
                                      "published_event_id": None, **values})
        else:
            draft_id = req.draft_id
            if not await store.update_draft(draft_id, me, values):
                raise NotFound("you have no unpublished draft with that ID", "draft_id")
        return {"draft_id": draft_id, "room_id": room_id, "updated_ts": now}

    async def drafts(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return {"drafts": [_draft_out(r) for r in await store.drafts(session.user_id)]}

    async def draft_delete(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        if not await store.delete_draft(req.draft_id, session.user_id):
            raise NotFound("you have no unpublished draft with that ID", "draft_id")
        return {}

    async def publish(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        draft = await store.draft(req.draft_id, session.user_id)
        if draft is None:
            raise NotFound("you have no draft with that ID", "draft_id")
        room_id = req.room_id or draft.room_id
        if room_id is None:
            raise BadField("this draft has no blog yet: give room_id", "room_id")
        if draft.published_event_id is None:
            check_blog_owner(session, room_id)
        result = await api.send(session, room_id, P.BLOG_POST, {"title": draft.title, "body": draft.body},
                                f"blog_publish:{draft.draft_id}", blogs, "blog posts")
        if draft.published_event_id is None:
            await store.mark_published(draft.draft_id, session.user_id, result["event_id"])
        return result

    async def edit(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        content: Dict[str, Any] = {"target": req.event_id, "body": req.body}
        if req.title is not None:
            content["title"] = req.title
        return await api.send(session, req.room_id, P.EDIT, content, req.txn_id, ("forum", "wall", "blog"),
                              "edits")

    async def edits(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.readable(session, req.room_id, ("forum", "wall", "blog"), "edits")
        row = await api.item_in(req.room_id, req.event_id, P.ITEM_TYPES, "event_id", "a post")
        original = (await store.events_json([row.event_id]))[row.event_id]
        page = await api.related_page(row.event_id, "edit", None, P.MAX_PAGE, session.user_id)
        return {"versions": [rooms.client_event(original[0], row.event_id, original[1])] + page["events"]}

    async def feed(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.member_of(session, req.service_id)
        visible = []
        for room_id in services.rooms_of(req.service_id):
            state = rooms.rooms[room_id]
            if rooms.kinds.get(room_id) == "blog" and (
                    state.join_rule() == "public" or state.membership(session.user_id) == "join"):
                visible.append(room_id)
        rows = await store.items_in_rooms(visible, (P.BLOG_POST,), req.before, req.limit)
        return {"posts": await api.render(rows, session.user_id),
                "next": rows[-1].pos if len(rows) == req.limit and rows else None}

    # -- reactions ---------------------------------------------------------------------------
    async def react(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return await api.send(session, req.room_id, P.REACTION, {"target": req.target, "key": req.key},
                              req.txn_id, tuple(P.REACTION_KINDS), "reactions")

    async def unreact(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return await api.send(session, req.room_id, P.REACTION,
                              {"target": req.target, "key": req.key, "removed": True},
                              req.txn_id, tuple(P.REACTION_KINDS), "reactions")

    async def reactions(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.readable(session, req.room_id, tuple(P.REACTION_KINDS), "reactions")
        meta = await store.event_meta(req.event_id)
        if meta is None or meta.room_id != req.room_id:
            raise NotFound("no such event in this room", "event_id")
        return {"reactions": (await store.reactions([req.event_id], session.user_id)).get(req.event_id, [])}

    # -- presents ----------------------------------------------------------------------------
    async def may_curate(session: Any, service_id: Optional[str]) -> None:
        await services.refresh_admins()
        if services.is_admin(session.user_id):
            return
        if service_id is None:
            raise Forbidden("only server admins maintain the server-wide presents")
        if services.role(service_id, session.user_id) != "admin":
            raise Forbidden("only admins maintain a service's presents")

    async def presents(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        if req.service_id is not None:
            api.member_of(session, req.service_id)
        return {"presents": [_present_out(r) for r in await store.presents(req.service_id)]}

    async def present_add(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        if req.service_id is not None:
            services.require_service(req.service_id)
        await may_curate(session, req.service_id)
        row = {"present_id": "p_" + secrets.token_urlsafe(9), "service_id": req.service_id, "name": req.name,
               "picture_media": req.picture_media, "created_by": session.user_id, "created_ts": ctx.now_ms(),
               "removed": False}
        await store.add_present(row)
        return {k: row[k] for k in ("present_id", "name", "picture_media", "service_id")}

    async def present_remove(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        row = await store.present(req.present_id)
        if row is None or row.removed:
            raise NotFound("no such present in the catalogue", "present_id")
        await may_curate(session, row.service_id)
        await store.remove_present(req.present_id)
        return {}

    async def present_send(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        content: Dict[str, Any] = {"present_id": req.present_id}
        if req.message is not None:
            content["message"] = req.message
        if req.to_user is not None:
            if req.room_id is not None or req.post_id is not None:
                raise BadField("give to_user with service_id, or room_id with post_id", "to_user")
            if req.service_id is None:
                raise BadField("service_id is required with to_user", "service_id")
            api.member_of(session, req.service_id)
            if not services.is_member(req.service_id, req.to_user):
                raise NotFound("that user is not a member of this service", "to_user")
            room_id = await api.wall(req.service_id, req.to_user)
            await api.ensure_joined(session, room_id)
            content["to_user"] = req.to_user
        elif req.room_id is not None and req.post_id is not None:
            room_id = req.room_id
            content["post_id"] = req.post_id
        else:
            raise BadField("give to_user with service_id, or room_id with post_id", "to_user")
        result = await api.send(session, room_id, P.PRESENT, content, req.txn_id, ("wall", "forum", "blog"),
                                "presents")
        return {**result, "room_id": room_id}

    return {P.BlogDraftSave: draft_save, P.BlogDrafts: drafts, P.BlogDraftDelete: draft_delete,
            P.BlogPublish: publish, P.BlogEdit: edit, P.Edits: edits, P.BlogFeed: feed,
            P.React: react, P.Unreact: unreact, P.Reactions: reactions,
            P.Presents: presents, P.PresentAdd: present_add, P.PresentRemove: present_remove,
            P.PresentSend: present_send}
