"""Event types of the content kinds: validation in ``prepare``, index rows in ``derive``.

Permissions the ps1 auth rules cannot express are checked here, so they hold whichever
op (or future bridge) sends the event:

- ``ps.thread.state``: staff of the room's service only (outside services: room moderators,
  power level >= 50);
- ``ps.reply``: not to a locked thread;
- ``ps.post`` on a service's wall: staff only; on a member's wall: any joined member;
- ``ps.blog.post``: the blog's owner (its creator) only;
- ``ps.edit``: the author of the post only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from protocol import content as P
from protocol.errors import BadField, Conflict, Forbidden, NotFound, TooLarge
from protocol.ids import EventID
from sharon_server.event_types import Derived, EventType, SendContext
from sharon_server.storage import content as Q

__all__ = ["ContentCore", "event_types"]

_NOT_REACTABLE = frozenset({P.REACTION, P.EDIT, "m.room.redaction"})


class ContentCore:
    """What the content event types and ops share: rooms, services, the store, the wall index."""

    def __init__(self, rooms: Any, services: Any, store: Any) -> None:
        self.rooms = rooms
        self.services = services
        self.store = store
        self.walls: Dict[Tuple[str, str], str] = {}
        """(service_id, owner user ID or "" for the service's wall) -> wall room ID."""
        self.wall_of: Dict[str, Tuple[str, str]] = {}
        """wall room ID -> (service_id, owner)."""

    def index_wall(self, room_id: str, service_id: str, owner: str) -> None:
        """Remember a wall room (the first one for a (service, owner) wins)."""
        self.walls.setdefault((service_id, owner), room_id)
        self.wall_of.setdefault(room_id, (service_id, owner))

    def load_walls(self) -> None:
        """Index every wall room from its create event (``service`` and ``wall_owner`` keys)."""
        for room_id, kind in sorted(self.rooms.kinds.items()):
            state = self.rooms.rooms.get(room_id)
            if kind != "wall" or state is None or state.create_event is None:
                continue
            content = state.create_event["content"]
            owner, service = content.get("wall_owner"), content.get("service")
            if type(owner) is str and type(service) is str:
                self.index_wall(room_id, service, owner)

    def is_moderator(self, room_id: str, state: Any, user_id: str) -> bool:
        """Staff of the room's service; for rooms outside services, power level >= 50."""
        service = self.services.service_of(room_id)
        if service is None:
            return self.services.is_admin(user_id) or state.user_level(user_id) >= 50
        return self.services.is_staff(service, user_id)

    def check_body(self, ctx: SendContext, field: str = "body", required: bool = True) -> Optional[str]:
        """A non-empty string within the room's character limit (TooLarge names the limit)."""
        body = ctx.content.get(field)
        if body is None and not required:
            return None
        if type(body) is not str or not body:
            raise BadField(f"{field} must be a non-empty string", field)
        limit = self.rooms.body_limit(ctx.room_id, ctx.kind)
        if len(body) > limit:
            raise TooLarge(f"{field} is {len(body)} characters; the limit for {ctx.kind} posts here is {limit}",
                           field)
        return body

    async def item_here(self, ctx: SendContext, field: str, types: Tuple[str, ...], what: str) -> Any:
        """The item named by ``ctx.content[field]``, which must be one of ``types`` in this room."""
        ref = _event_ref(ctx.content, field)
        row = await self.store.item(ref)
        if row is None or row.room_id != ctx.room_id or row.type not in types:
            raise BadField(f"{field} is not {what} in this room", field)
        return row


def _event_ref(content: Dict[str, Any], field: str) -> str:
    return str(EventID.parse(content.get(field), field=field))


def _title(content: Dict[str, Any], required: bool = True) -> Optional[str]:
    title = content.get("title")
    if title is None and not required:
        return None
    if type(title) is not str or not title.strip():
        raise BadField("title must be a non-empty string", "title")
    if len(title) > P.MAX_TITLE_CHARS:
        raise BadField(f"title must be at most {P.MAX_TITLE_CHARS} characters", "title")
    return title


def _notify(ctx: SendContext, sender: str, *pairs: Tuple[Optional[str], str]) -> None:
    """Add (user, reason) notifications for everyone but the sender, once per user."""
    out: List[Tuple[str, str]] = ctx.scratch.setdefault("notify", [])
    seen = {u for u, _ in out}
    for user_id, reason in pairs:
        if user_id and user_id != sender and user_id not in seen:
            out.append((user_id, reason))
            seen.add(user_id)


def _item_row(core: ContentCore, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any],
              wall_owner: Optional[str] = None) -> Dict[str, Any]:
    return {"event_id": event_id, "room_id": ctx.room_id, "service_id": core.services.service_of(ctx.room_id),
            "type": ctx.etype, "author": event["sender"], "wall_owner": wall_owner, "pos": pos, "last_pos": pos,
            "child_count": 0, "present_count": 0, "pinned": False, "locked": False, "current_id": event_id}


def _relation(rel: str, parent: str, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Any:
    return (Q.INSERT_RELATION, [{"event_id": event_id, "rel": rel, "parent_id": parent, "room_id": ctx.room_id,
                                 "sender": event["sender"], "pos": pos}])


class _Typed(EventType):
    def __init__(self, core: ContentCore) -> None:
        self.core = core


class ThreadType(_Typed):
    """``ps.thread`` {title, body}: a forum thread and its first post."""

    etype, kinds = P.THREAD, frozenset({"forum"})

    def prepare(self, ctx: SendContext) -> None:
        title = _title(ctx.content)
        ctx.content = {"title": title, "body": self.core.check_body(ctx)}

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        return [(Q.INSERT_ITEM, [_item_row(self.core, ctx, event_id, pos, event)])]


class ReplyType(_Typed):
    """``ps.reply`` {thread_id, body}: a reply to an unlocked thread of the same forum."""

    etype, kinds = P.REPLY, frozenset({"forum"})

    async def prepare(self, ctx: SendContext) -> None:
        body = self.core.check_body(ctx)
        thread = await self.core.item_here(ctx, "thread_id", (P.THREAD,), "a thread")
        flags = ctx.state.get(P.THREAD_STATE, thread.event_id)
        if flags is not None and flags["content"].get("locked") is True:
            raise Forbidden("this thread is locked: it takes no more replies", "thread_id")
        ctx.content = {"thread_id": thread.event_id, "body": body}
        _notify(ctx, ctx.session.user_id, (thread.author, "reply"))

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        parent = ctx.content["thread_id"]
        return [_relation("reply", parent, ctx, event_id, pos, event),
                (Q.BUMP_CHILD, [{"b_parent": parent, "b_pos": pos}])]


class ThreadStateType(_Typed):
    """``ps.thread.state`` (state_key = thread ID) {pinned, locked}: set by staff."""

    etype, kinds, state_event = P.THREAD_STATE, frozenset({"forum"}), True

    async def prepare(self, ctx: SendContext) -> None:
        if not self.core.is_moderator(ctx.room_id, ctx.state, ctx.session.user_id):
            raise Forbidden("only staff can pin or lock threads")
        ctx.content = dict(ctx.content, thread_id=ctx.state_key)
        await self.core.item_here(ctx, "thread_id", (P.THREAD,), "a thread")
        current = ctx.state.get(P.THREAD_STATE, ctx.state_key)
        merged = {"pinned": False, "locked": False, **(current["content"] if current else {})}
        for key in ("pinned", "locked"):
            value = ctx.content.get(key)
            if value is not None:
                if type(value) is not bool:
                    raise BadField(f"{key} must be true or false", key)
                merged[key] = value
        ctx.content = merged

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        return [(Q.SET_FLAGS, [{"b_parent": ctx.state_key, "b_pinned": ctx.content["pinned"],
                                "b_locked": ctx.content["locked"]}])]


class PostType(_Typed):
    """``ps.post`` {body}: a post on a wall (a service's wall: staff only)."""

    etype, kinds = P.POST, frozenset({"wall"})

    def prepare(self, ctx: SendContext) -> None:
        ctx.content = {"body": self.core.check_body(ctx)}
        wall = self.core.wall_of.get(ctx.room_id)
        if wall is not None and wall[1] == "" and not self.core.services.is_staff(wall[0], ctx.session.user_id):
            raise Forbidden("only staff post on the service's wall; members comment")
        if wall is not None:
            _notify(ctx, ctx.session.user_id, (wall[1], "wall_post"))

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        wall = self.core.wall_of.get(ctx.room_id)
        return [(Q.INSERT_ITEM, [_item_row(self.core, ctx, event_id, pos, event, wall[1] if wall else None)])]


class CommentType(_Typed):
    """``ps.comment`` {post_id, body}: a comment on a wall post, present or blog post."""

    etype, kinds = P.COMMENT, frozenset({"wall", "blog"})

    async def prepare(self, ctx: SendContext) -> None:
        body = self.core.check_body(ctx)
        post = await self.core.item_here(ctx, "post_id", (P.POST, P.BLOG_POST, P.PRESENT), "a post")
        ctx.content = {"post_id": post.event_id, "body": body}
        _notify(ctx, ctx.session.user_id, (post.author, "comment"), (post.wall_owner, "comment"))

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        parent = ctx.content["post_id"]
        return [_relation("comment", parent, ctx, event_id, pos, event),
                (Q.BUMP_CHILD, [{"b_parent": parent, "b_pos": pos}])]


class BlogPostType(_Typed):
    """``ps.blog.post`` {title, body}: a published blog post, by the blog's owner only."""

    etype, kinds = P.BLOG_POST, frozenset({"blog"})

    def prepare(self, ctx: SendContext) -> None:
        if ctx.session.user_id != ctx.state.creator:
            raise Forbidden("only the blog's owner publishes posts here; others comment")
        title = _title(ctx.content)
        ctx.content = {"title": title, "body": self.core.check_body(ctx)}

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        return [(Q.INSERT_ITEM, [_item_row(self.core, ctx, event_id, pos, event)])]


class EditType(_Typed):
    """``ps.edit`` {target, title?, body}: the full new version of the author's own post."""

    etype, kinds = P.EDIT, frozenset({"forum", "wall", "blog"})

    async def prepare(self, ctx: SendContext) -> None:
        body = self.core.check_body(ctx)
        title = _title(ctx.content, required=False)
        item = await self.core.item_here(ctx, "target", P.ITEM_TYPES, "a post")
        if item.author != ctx.session.user_id:
            raise Forbidden("only the author can edit this post", "target")
        content: Dict[str, Any] = {"target": item.event_id, "body": body}
        if item.type in (P.THREAD, P.BLOG_POST):
            if title is None:
                current = (await self.core.store.events_json([item.current_id])).get(item.current_id)
                title = current[0]["content"].get("title") if current else None
            if title is not None:
                content["title"] = title
        elif title is not None:
            raise BadField("this kind of post has no title", "title")
        ctx.content = content

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        target = ctx.content["target"]
        return [_relation("edit", target, ctx, event_id, pos, event),
                (Q.SET_CURRENT, [{"b_parent": target, "b_current": event_id}])]


class ReactionType(_Typed):
    """``ps.reaction`` {target, key, removed?}: one reaction per user, key and target."""

    etype = P.REACTION

    async def prepare(self, ctx: SendContext) -> None:
        target = _event_ref(ctx.content, "target")
        key = ctx.content.get("key")
        if type(key) is not str or not key.strip() or len(key) > P.MAX_KEY_CHARS:
            raise BadField(f"key must be a non-empty string of at most {P.MAX_KEY_CHARS} characters", "key")
        removed = ctx.content.get("removed", False)
        if type(removed) is not bool:
            raise BadField("removed must be true or false", "removed")
        meta = await self.core.store.event_meta(target)
        if meta is None or meta.room_id != ctx.room_id or meta.state_key is not None \
                or meta.type in _NOT_REACTABLE:
            raise BadField("target is not a post or message in this room", "target")
        has = await self.core.store.has_reaction(target, key, ctx.session.user_id)
        if has and not removed:
            raise Conflict(f"you already reacted {key!r} to this", "key")
        if removed and not has:
            raise NotFound(f"you have no {key!r} reaction on this", "key")
        ctx.content = {"target": target, "key": key, **({"removed": True} if removed else {})}
        ctx.scratch.setdefault("text", [])
        if not removed:
            _notify(ctx, ctx.session.user_id, (meta.sender, "reaction"))

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        c = ctx.content
        if c.get("removed"):
            return [(Q.DELETE_REACTION, [{"b_target": c["target"], "b_key": c["key"], "b_user": event["sender"]}])]
        return [(self.core.store.add_reaction, [{"target": c["target"], "key": c["key"], "user_id": event["sender"],
                                                 "room_id": ctx.room_id, "event_id": event_id, "pos": pos}])]


class PresentType(_Typed):
    """``ps.present`` {present_id, to_user | post_id, message?}: a catalogue present.

    Given to a member it must be sent in that member's wall; attached to a post, in the
    post's room. The server copies the catalogue entry's name and picture into the event.
    """

    etype, kinds = P.PRESENT, frozenset({"wall", "forum", "blog"})

    async def prepare(self, ctx: SendContext) -> None:
        c = ctx.content
        present_id = c.get("present_id")
        if type(present_id) is not str:
            raise BadField("present_id must be a string", "present_id")
        entry = await self.core.store.present(present_id)
        service = self.core.services.service_of(ctx.room_id)
        if entry is None or entry.removed or entry.service_id not in (None, service):
            raise NotFound("no such present in this service's catalogue", "present_id")
        out: Dict[str, Any] = {"present_id": present_id, "name": entry.name}
        if entry.picture_media is not None:
            out["picture_media"] = entry.picture_media
        if (c.get("to_user") is None) == (c.get("post_id") is None):
            raise BadField("give either to_user or post_id", "to_user")
        if c.get("to_user") is not None:
            wall = self.core.wall_of.get(ctx.room_id)
            if wall is None or wall[1] != c["to_user"] or not wall[1]:
                raise BadField("a present for a member is sent on that member's wall", "to_user")
            out["to_user"] = wall[1]
            _notify(ctx, ctx.session.user_id, (wall[1], "present"))
        else:
            post = await self.core.item_here(ctx, "post_id", P.ITEM_TYPES, "a post")
            out["post_id"] = post.event_id
            _notify(ctx, ctx.session.user_id, (post.author, "present"))
        message = self.core.check_body(ctx, "message", required=False)
        if message is not None:
            out["message"] = message
        ctx.scratch["text"] = [message] if message else []
        ctx.content = out

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        if "to_user" in ctx.content:
            return [(Q.INSERT_ITEM, [_item_row(self.core, ctx, event_id, pos, event, ctx.content["to_user"])])]
        parent = ctx.content["post_id"]
        return [_relation("present", parent, ctx, event_id, pos, event),
                (Q.BUMP_PRESENT, [{"b_parent": parent}])]


def event_types(core: ContentCore) -> List[EventType]:
    """One instance of every content event type."""
    return [cls(core) for cls in (ThreadType, ReplyType, ThreadStateType, PostType, CommentType,
                                  BlogPostType, EditType, ReactionType, PresentType)]
