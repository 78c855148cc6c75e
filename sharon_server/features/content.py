"""Content kinds: forums, walls and the timeline, blogs, reactions and presents (issue #4).

Every post is an event (``content_types``) in a room of the right kind, so it is signed,
delivered live to the room's subscribers and paged with ``history`` like any message; the
ops here are thin: they pick the room (walls are created lazily, one per member and
service plus one per service), send the event with ``rooms.send_event`` (idempotent by
``txn_id``) and answer listings from the derived tables. Blog, reaction and present ops
are in ``content_ops``.

Who may do what (docs/protocol.md §8.2):

- reading any listing needs the caller joined to the room, like ``history``; service rooms
  can only be joined by the service's members, so other services' content stays unreadable;
- walls: any member of the service opens (and so joins) any member's wall in it and may
  post and comment there; on the service's own wall only staff post, members comment;
- the timeline merges your own wall, the walls you follow and the service walls, only in
  services you are a member of (and only of followees still members there).
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Tuple

from twisted.logger import Logger

from protocol import content as P
from protocol.canonical_json import decode_stored
from protocol.errors import BadField, Forbidden, NotFound, NotInRoom, RoomNotFound
from rooms.builder import default_power_levels
from rooms.kinds import POWER_LEVELS
from sharon_server.accounts import Session
from sharon_server.features.content_types import ContentCore, event_types
from sharon_server.ops import register_handlers
from sharon_server.storage.content import ContentStore

__all__ = ["install", "ContentApi"]

log = Logger(namespace="sharon.content")


class ContentApi:
    """Helpers the content ops share: room checks, sending, walls, rendering items."""

    def __init__(self, ctx: Any, core: ContentCore) -> None:
        self.ctx = ctx
        self.core = core
        self.rooms = ctx.rooms
        self.services = ctx.services
        self.store: ContentStore = core.store
        self._creating: Dict[Tuple[str, str], "asyncio.Future[str]"] = {}

    # -- rooms -------------------------------------------------------------------------
    def room(self, room_id: str, kinds: Tuple[str, ...], what: str) -> Any:
        """The state of ``room_id``, which must exist and be of one of ``kinds``."""
        state = self.rooms.rooms.get(room_id)
        if state is None:
            raise RoomNotFound(f"no room {room_id} on this server", "room_id")
        kind = self.rooms.kinds.get(room_id)
        if kind not in kinds:
            raise BadField(f"room_id is a {kind} room; {what} need a {' or '.join(kinds)} room", "room_id")
        return state

    def readable(self, session: Session, room_id: str, kinds: Tuple[str, ...], what: str) -> Any:
        """As ``room``, and the caller must be joined to it or let in by a read guard (a staff
        observer, #5), exactly like ``history``."""
        state = self.room(room_id, kinds, what)
        if state.membership(session.user_id) != "join" and not self.rooms.may_read(session.user_id, room_id):
            raise NotInRoom(f"you are not joined to room {room_id}", "room_id")
        return state

    def member_of(self, session: Session, service_id: str) -> None:
        """Forbidden unless the caller is a member of the service (or a server admin)."""
        self.services.require_service(service_id)
        if not self.services.is_member(service_id, session.user_id) and not self.services.is_admin(session.user_id):
            raise Forbidden("you are not a member of this service", "service_id")

    async def send(self, session: Session, room_id: str, etype: str, content: Dict[str, Any],
                   txn_id: Optional[str], kinds: Tuple[str, ...], what: str,
                   state_key: Optional[str] = None) -> Dict[str, Any]:
        """Send one content event after checking the room's kind; the ``ok`` result."""
        self.room(room_id, kinds, what)
        event_id, pos, duplicate = await self.rooms.send_event(session, room_id, etype, content, txn_id, state_key)
        return {"event_id": event_id, "pos": pos, "duplicate": duplicate}

    # -- walls -------------------------------------------------------------------------
    async def wall(self, service_id: str, owner: str) -> str:
        """The wall room of ``owner`` ("" for the service) in the service, created on first use."""
        key = (service_id, owner)
        room_id = self.core.walls.get(key)
        if room_id is not None:
            return room_id
        pending = self._creating.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._creating[key] = future
        try:
            creator = owner or self.rooms.rooms[service_id].creator
            pseudonym = self.ctx.accounts.pseudonym_of(creator) or ""
            name = f"{pseudonym}'s wall" if owner else f"{self.rooms.rooms[service_id].name or 'Service'} wall"
            room_id, _ = await self.rooms.create_room(
                Session(creator, "", pseudonym, b""), "wall", name, None, True,
                {"service_id": service_id, "create_content": {"wall_owner": owner}})
            self.core.index_wall(room_id, service_id, owner)
            log.info("content.wall_created", room_id=room_id, service_id=service_id, service_wall=not owner)
            future.set_result(room_id)
            return room_id
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._creating.pop(key, None)

    async def ensure_joined(self, session: Session, room_id: str) -> None:
        """Join the caller to a (public, service) room if not yet joined; guards still apply."""
        if self.rooms.rooms[room_id].membership(session.user_id) != "join":
            await self.rooms.set_membership(session, room_id, "join")

    # -- rendering ---------------------------------------------------------------------
    async def render(self, rows: List[Any], me: str) -> List[Dict[str, Any]]:
        """Client form of items: the original event with its current title/body, counts, reactions."""
        ids = [r.event_id for r in rows]
        found = await self.store.events_json(ids + [r.current_id for r in rows])
        reactions = await self.store.reactions(ids, me)
        out = []
        for row in rows:
            if row.event_id not in found:
                continue
            event, pos = found[row.event_id]
            client = self.rooms.client_event(event, row.event_id, pos)
            content = dict(client["content"])
            if row.current_id != row.event_id and row.current_id in found:
                latest = found[row.current_id][0]["content"]
                content.update({k: latest[k] for k in ("title", "body") if k in latest})
                client["edited_ts"] = found[row.current_id][0]["origin_server_ts"]
            client["content"] = content
            client["edited"] = row.current_id != row.event_id
            client["last_pos"] = row.last_pos
            client["reply_count" if row.type == P.THREAD else "comment_count"] = row.child_count
            client["present_count"] = row.present_count
            client["reactions"] = reactions.get(row.event_id, [])
            if row.type == P.THREAD:
                client["pinned"], client["locked"] = bool(row.pinned), bool(row.locked)
            if row.wall_owner is not None:
                client["wall_owner"] = row.wall_owner
            out.append(client)
        return out

    async def related_page(self, parent_id: str, rel: str, from_pos: Optional[int], limit: int,
                           me: str) -> Dict[str, Any]:
        """One page (oldest first) of events related to an item, with their reactions."""
        rows = await self.store.related(parent_id, rel, from_pos, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        events = [self.rooms.client_event(decode_stored(r.json), r.event_id, r.pos) for r in rows]
        reactions = await self.store.reactions([e["event_id"] for e in events], me)
        for e in events:
            e["reactions"] = reactions.get(e["event_id"], [])
        return {"events": events, "next": rows[-1].pos if more and rows else None}

    async def item_in(self, room_id: str, event_id: str, types: Tuple[str, ...], field: str, what: str) -> Any:
        """The item row, which must be one of ``types`` in ``room_id`` (NotFound naming ``field``)."""
        row = await self.store.item(event_id)
        if row is None or row.room_id != room_id or row.type not in types:
            raise NotFound(f"{field} is not {what} in this room", field)
        return row


def _open_to(rooms: Any, room_id: str, user_id: str) -> bool:
    """True if the room is public (within its service) or the user is joined to it."""
    state = rooms.rooms[room_id]
    return state.join_rule() == "public" or state.membership(user_id) == "join"


def _page(rows: List[Any], limit: int, key: str = "pos") -> Optional[int]:
    return getattr(rows[-1], key) if len(rows) == limit and rows else None


def install(ctx: Any) -> None:
    """Register the content event types, the forum power-level tweak, the wall index and the ops."""
    core = ContentCore(ctx.rooms, ctx.services, ContentStore(ctx.db))
    for etype in event_types(core):
        ctx.rooms.register_event_type(etype)
    api = ContentApi(ctx, core)
    ctx.extras["content"] = api

    def forum_levels(session: Session, kind: str, options: Dict[str, Any]) -> None:
        # ps.thread.state is a state event (state_default 50); staff are rarely room
        # moderators, so the level is 0 and ThreadStateType.prepare does the staff check.
        if kind == "forum":
            levels = default_power_levels(session.user_id, kind)
            levels["events"] = dict(levels["events"], **{P.THREAD_STATE: 0})
            options["extra_state"] = list(options.get("extra_state", ())) + [(POWER_LEVELS, "", levels)]

    ctx.rooms.create_guards.append(forum_levels)

    async def load() -> None:
        core.load_walls()

    ctx.add_loader(load)
    register_handlers(_forum_and_wall_handlers(api))
    from sharon_server.features import content_ops
    register_handlers(content_ops.handlers(api))


def _forum_and_wall_handlers(api: ContentApi) -> Dict[type, Any]:
    rooms, services, store = api.rooms, api.services, api.store
    forum, walls = ("forum",), ("wall",)

    async def thread_create(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return await api.send(session, req.room_id, P.THREAD, {"title": req.title, "body": req.body},
                              req.txn_id, forum, "threads")

    async def thread_reply(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return await api.send(session, req.room_id, P.REPLY, {"thread_id": req.thread_id, "body": req.body},
                              req.txn_id, forum, "replies")

    async def thread_state(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        result = await api.send(session, req.room_id, P.THREAD_STATE, dict(req.changes), None, forum,
                                "thread states", state_key=req.thread_id)
        flags = rooms.rooms[req.room_id].get(P.THREAD_STATE, req.thread_id)["content"]
        return {"event_id": result["event_id"], "pos": result["pos"], **flags}

    async def threads(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.readable(session, req.room_id, forum, "threads")
        pinned, rest = await store.threads(req.room_id, P.THREAD, req.before, req.limit)
        return {"threads": await api.render(pinned + rest, session.user_id),
                "next": _page(rest, req.limit, "last_pos")}

    async def thread(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.readable(session, req.room_id, forum, "threads")
        row = await api.item_in(req.room_id, req.thread_id, (P.THREAD,), "thread_id", "a thread")
        first = (await api.render([row], session.user_id))[0]
        page = await api.related_page(row.event_id, "reply", req.from_pos, req.limit, session.user_id)
        return {"thread": first, "replies": page["events"], "next": page["next"]}

    async def wall_open(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.member_of(session, req.service_id)
        if req.service_wall:
            if req.user_id is not None:
                raise BadField("give user_id or service_wall, not both", "service_wall")
            owner = ""
        else:
            owner = req.user_id or session.user_id
            if not services.is_member(req.service_id, owner):
                raise NotFound("that user is not a member of this service", "user_id")
        room_id = await api.wall(req.service_id, owner)
        await api.ensure_joined(session, room_id)
        return {"room_id": room_id, "owner": owner or None, "service_id": req.service_id}

    async def wall_post(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return await api.send(session, req.room_id, P.POST, {"body": req.body}, req.txn_id, walls, "wall posts")

    async def wall(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.readable(session, req.room_id, walls, "walls")
        rows = await store.items_in_rooms([req.room_id], (P.POST, P.PRESENT), req.before, req.limit)
        owner = api.core.wall_of.get(req.room_id)
        return {"posts": await api.render(rows, session.user_id), "next": _page(rows, req.limit),
                "owner": (owner[1] or None) if owner else rooms.rooms[req.room_id].creator}

    async def comment(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return await api.send(session, req.room_id, P.COMMENT, {"post_id": req.post_id, "body": req.body},
                              req.txn_id, ("wall", "blog"), "comments")

    async def comments(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.readable(session, req.room_id, ("wall", "blog"), "comments")
        row = await api.item_in(req.room_id, req.post_id, (P.POST, P.BLOG_POST, P.PRESENT), "post_id", "a post")
        page = await api.related_page(row.event_id, "comment", req.from_pos, req.limit, session.user_id)
        return {"comments": page["events"], "next": page["next"]}

    async def follow(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        api.member_of(session, req.service_id)
        if req.user_id == session.user_id:
            raise BadField("you cannot follow yourself", "user_id")
        if not services.is_member(req.service_id, req.user_id):
            raise NotFound("that user is not a member of this service", "user_id")
        await store.follow(session.user_id, req.service_id, req.user_id, api.ctx.now_ms())
        return {}

    async def unfollow(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        if not await store.unfollow(session.user_id, req.service_id, req.user_id):
            raise NotFound("you do not follow that user in this service", "user_id")
        return {}

    async def following(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        pairs = [p for p in await store.follows(session.user_id) if req.service_id in (None, p[0])]
        accounts = api.ctx.accounts
        return {"following": [{"service_id": s, "user_id": u, "pseudonym": accounts.pseudonym_of(u)}
                              for s, u in pairs]}

    async def timeline(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        me = session.user_id
        mine = services.services_of(me)
        if req.service_id is not None:
            if req.service_id not in mine:
                raise Forbidden("you are not a member of this service", "service_id")
            mine = [req.service_id]
        owners: Dict[str, List[str]] = {s: [me, ""] for s in mine}
        for service_id, followee in await store.follows(me):
            if service_id in owners and services.is_member(service_id, followee):
                owners[service_id].append(followee)
        room_ids = sorted({api.core.walls[(s, o)] for s, os in owners.items() for o in os
                           if (s, o) in api.core.walls and _open_to(rooms, api.core.walls[(s, o)], me)})
        rows = await store.items_in_rooms(room_ids, (P.POST, P.PRESENT), req.before, req.limit)
        return {"posts": await api.render(rows, me), "next": _page(rows, req.limit)}

    return {P.ThreadCreate: thread_create, P.ThreadReply: thread_reply, P.ThreadState: thread_state,
            P.Threads: threads, P.Thread: thread, P.WallOpen: wall_open, P.WallPost: wall_post, P.Wall: wall,
            P.Comment: comment, P.Comments: comments, P.Follow: follow, P.Unfollow: unfollow,
            P.Following: following, P.Timeline: timeline}
