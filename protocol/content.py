"""Content kinds (forums, walls, blogs, reactions, presents): event types and requests (pure).

Everything a member writes is an event in a room (docs/protocol.md §8.2):

- forum rooms: ``ps.thread`` ``{title, body}``, ``ps.reply`` ``{thread_id, body}`` and the
  state event ``ps.thread.state`` (state_key = thread event ID) ``{pinned, locked}``;
- wall rooms: ``ps.post`` ``{body}``; wall and blog rooms: ``ps.comment`` ``{post_id, body}``;
- blog rooms: ``ps.blog.post`` ``{title, body}``;
- forum, wall and blog rooms: ``ps.edit`` ``{target, title?, body}`` (author only);
- any room: ``ps.reaction`` ``{target, key, removed?}``;
- wall, forum and blog rooms: ``ps.present`` ``{present_id, name, picture_media?, to_user?,
  post_id?, message?}``.

Requests are plain frozen attrs classes built from a field table, one per op.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from protocol.errors import BadField
from protocol.events import CLIENT_ROOM_KINDS
from protocol.fields import Reader, event, make_request, room, text, user
from protocol.frames import read_bool, read_int

__all__ = [
    "THREAD", "REPLY", "THREAD_STATE", "POST", "COMMENT", "BLOG_POST", "EDIT", "REACTION", "PRESENT",
    "ITEM_TYPES", "REACTION_KINDS", "MAX_TITLE_CHARS", "MAX_KEY_CHARS", "MAX_PAGE", "REQUESTS",
]

THREAD = "ps.thread"
REPLY = "ps.reply"
THREAD_STATE = "ps.thread.state"
POST = "ps.post"
COMMENT = "ps.comment"
BLOG_POST = "ps.blog.post"
EDIT = "ps.edit"
REACTION = "ps.reaction"
PRESENT = "ps.present"

ITEM_TYPES = (THREAD, POST, BLOG_POST)
"""Top-level posts: they have an author, can be edited, and collect replies or comments."""

REACTION_KINDS = CLIENT_ROOM_KINDS
"""Room kinds whose posts and messages take reactions."""

MAX_TITLE_CHARS = 300
MAX_KEY_CHARS = 32
MAX_PAGE = 100
MAX_DRAFT_CHARS = 60000
"""Drafts not yet tied to a blog are capped at the largest limit a service may set."""

_s = text
_room = room
_user = user
_event = event


def _int(name: str, default: Optional[int], lo: int, hi: Optional[int]) -> Reader:
    return lambda f: read_int(f, name, default, lo, hi)


def _optbool(name: str) -> Reader:
    def read(f: Dict[str, Any]) -> Optional[bool]:
        return None if f.get(name) is None else read_bool(f, name, False)
    return read


_TXN = _s("txn_id", 1, 64)
_BODY = _s("body", 1)
_TITLE = _s("title", 1, MAX_TITLE_CHARS)
_LIMIT = _int("limit", 20, 1, MAX_PAGE)
_BEFORE = _int("before", None, 0, None)
_KEY = _s("key", 1, MAX_KEY_CHARS)

REQUESTS: Dict[str, type] = {}
"""op name -> request class, for the server's handler table and the docs."""


def _request(op: str, doc: str, **fields: Reader) -> type:
    """Define and register the request class for ``op`` with ``fields`` read in order."""
    return make_request(REQUESTS, op, doc, **fields)


def _thread_state_fields(f: Dict[str, Any]) -> Dict[str, bool]:
    out = {k: read_bool(f, k, False) for k in ("pinned", "locked") if f.get(k) is not None}
    if not out:
        raise BadField("give pinned and/or locked", "pinned")
    return out


# -- forums ---------------------------------------------------------------------------------
ThreadCreate = _request("thread_create", "``thread_create``: start a thread in a forum room.",
                        room_id=_room(), txn_id=_TXN, title=_TITLE, body=_BODY)
ThreadReply = _request("thread_reply", "``thread_reply``: reply to a thread.",
                       room_id=_room(), txn_id=_TXN, thread_id=_event("thread_id"), body=_BODY)
ThreadState = _request("thread_state", "``thread_state``: staff pin/unpin, lock/unlock a thread.",
                       room_id=_room(), thread_id=_event("thread_id"), changes=_thread_state_fields)
Threads = _request("threads", "``threads``: a forum's threads, pinned first, then by latest activity.",
                   room_id=_room(), before=_BEFORE, limit=_LIMIT)
Thread = _request("thread", "``thread``: a thread's first post and a page of its replies.",
                  room_id=_room(), thread_id=_event("thread_id"), from_pos=_int("from", None, 0, None),
                  limit=_LIMIT)

# -- walls and the timeline -------------------------------------------------------------------
WallOpen = _request("wall_open", "``wall_open``: a member's (or the service's) wall room; joins it.",
                    service_id=_room("service_id"), user_id=_user(optional=True),
                    service_wall=lambda f: read_bool(f, "service_wall", False))
WallPost = _request("wall_post", "``wall_post``: post on a wall.", room_id=_room(), txn_id=_TXN, body=_BODY)
Wall = _request("wall", "``wall``: a wall's posts and presents, newest first.",
                room_id=_room(), before=_BEFORE, limit=_LIMIT)
Comment = _request("comment", "``comment``: comment on a wall or blog post.",
                   room_id=_room(), txn_id=_TXN, post_id=_event("post_id"), body=_BODY)
Comments = _request("comments", "``comments``: a page of a post's comments, oldest first.",
                    room_id=_room(), post_id=_event("post_id"), from_pos=_int("from", None, 0, None),
                    limit=_LIMIT)
Follow = _request("follow", "``follow``: follow a member's wall within a service.",
                  service_id=_room("service_id"), user_id=_user())
Unfollow = _request("unfollow", "``unfollow``: stop following a member's wall.",
                    service_id=_room("service_id"), user_id=_user())
Following = _request("following", "``following``: whom the caller follows.",
                     service_id=_room("service_id", optional=True))
Timeline = _request("timeline", "``timeline``: posts of followed walls, your own and the service walls.",
                    service_id=_room("service_id", optional=True), before=_BEFORE, limit=_LIMIT)

# -- blogs ------------------------------------------------------------------------------------
BlogDraftSave = _request("blog_draft_save", "``blog_draft_save``: create or update a private draft.",
                         room_id=_room(optional=True), draft_id=_s("draft_id", 1, 64, optional=True),
                         title=_s("title", 0, MAX_TITLE_CHARS), body=_s("body", 0, MAX_DRAFT_CHARS))
BlogDrafts = _request("blog_drafts", "``blog_drafts``: the caller's unpublished drafts.")
BlogDraftDelete = _request("blog_draft_delete", "``blog_draft_delete``: discard a draft.",
                           draft_id=_s("draft_id", 1, 64))
BlogPublish = _request("blog_publish", "``blog_publish``: publish a draft as a ``ps.blog.post``.",
                       draft_id=_s("draft_id", 1, 64), room_id=_room(optional=True))
BlogEdit = _request("blog_edit", "``blog_edit``: edit your post (any top-level post); keeps history.",
                    room_id=_room(), txn_id=_TXN, event_id=_event("event_id"),
                    title=_s("title", 1, MAX_TITLE_CHARS, optional=True), body=_BODY)
Edits = _request("edits", "``edits``: a post's versions, the original first.",
                 room_id=_room(), event_id=_event("event_id"))
BlogFeed = _request("blog_feed", "``blog_feed``: a service's published blog posts, newest first.",
                    service_id=_room("service_id"), before=_BEFORE, limit=_LIMIT)

# -- reactions and presents -------------------------------------------------------------------
React = _request("react", "``react``: add a reaction to any post or message.",
                 room_id=_room(), txn_id=_TXN, target=_event("target"), key=_KEY)
Unreact = _request("unreact", "``unreact``: remove your reaction.",
                   room_id=_room(), txn_id=_TXN, target=_event("target"), key=_KEY)
Reactions = _request("reactions", "``reactions``: the reactions on one event.",
                     room_id=_room(), event_id=_event("event_id"))
Presents = _request("presents", "``presents``: the catalogue (server-wide and a service's own).",
                    service_id=_room("service_id", optional=True))
PresentAdd = _request("present_add", "``present_add``: admins add a present to the catalogue.",
                      name=_s("name", 1, 64), picture_media=_s("picture_media", 1, 255, optional=True),
                      service_id=_room("service_id", optional=True))
PresentRemove = _request("present_remove", "``present_remove``: admins withdraw a present.",
                         present_id=_s("present_id", 1, 64))
PresentSend = _request("present_send", "``present_send``: give a present to a member or attach it to a post.",
                       present_id=_s("present_id", 1, 64), txn_id=_TXN,
                       service_id=_room("service_id", optional=True), to_user=_user("to_user", optional=True),
                       room_id=_room(optional=True), post_id=_event("post_id", optional=True),
                       message=_s("message", 1, 500, optional=True))
