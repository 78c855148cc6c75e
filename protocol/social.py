"""Mentions, hashtags, notifications and search: request types (pure).

Ops: ``notifications``, ``notifications_read``, ``search``, ``tag_posts``, ``trending``,
``tag_candidates``, ``tag_approve``, ``tag_revoke``; push: ``{"op": "notification", "notification": {...}}``.
See docs/protocol.md §8.3.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import attr

from protocol.errors import BadField
from protocol.frames import RequestId, read_bool, read_int, read_room_id, read_str, register_request
from protocol.ids import RoomID
from protocol.text import MAX_TAG_CHARS, normalise_tag

__all__ = [
    "NOTIFICATION_REASONS", "notification_frame",
    "Notifications", "NotificationsRead", "Search", "TagPosts", "TrendingTags", "TagCandidates", "TagApprove",
    "TagRevoke",
]

NOTIFICATION_REASONS = ("mention", "reply", "comment", "wall_post", "present", "reaction")
"""Reasons features use in ``scratch["notify"]``; other strings are passed through."""

MAX_PAGE = 100
MAX_QUERY_CHARS = 500


def notification_frame(notification: Dict[str, Any]) -> Dict[str, Any]:
    """``{"op": "notification", "notification": ...}`` (a push; no id)."""
    return {"op": "notification", "notification": notification}


_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class Notifications:
    """``notifications``: one page of the caller's feed, newest first, with the unread count."""

    id: RequestId
    before: Optional[int]
    limit: int
    unread_only: bool


@_frozen
class NotificationsRead:
    """``notifications_read``: mark notifications read up to ``upto`` (all when absent)."""

    id: RequestId
    upto: Optional[int]


@_frozen
class Search:
    """``search``: full-text search over the rooms the caller is joined to."""

    id: RequestId
    query: str
    room_id: Optional[RoomID]
    service_id: Optional[RoomID]
    before: Optional[int]
    limit: int


@_frozen
class TagPosts:
    """``tag_posts``: events tagged ``#tag`` in a service, newest first."""

    id: RequestId
    service_id: RoomID
    tag: str
    before: Optional[int]
    limit: int


@_frozen
class TrendingTags:
    """``trending``: a service's approved trending tags (if the service enables trending)."""

    id: RequestId
    service_id: RoomID


@_frozen
class TagCandidates:
    """``tag_candidates``: staff see the tags in use that are not approved yet."""

    id: RequestId
    service_id: RoomID


@_frozen
class TagApprove:
    """``tag_approve``: staff allow a tag to trend in their service."""

    id: RequestId
    service_id: RoomID
    tag: str


@_frozen
class TagRevoke:
    """``tag_revoke``: staff withdraw a tag's approval (it stops trending at once)."""

    id: RequestId
    service_id: RoomID
    tag: str


def read_tag(frame: Dict[str, Any], name: str = "tag") -> str:
    """A tag with or without its ``#``, normalised like extracted tags."""
    raw = read_str(frame, name, min_len=1, max_len=MAX_TAG_CHARS + 1) or ""
    tag = normalise_tag(raw[1:] if raw.startswith("#") else raw)
    if not tag or len(tag) > MAX_TAG_CHARS or not all(c == "_" or c.isalnum() for c in tag) \
            or not any(c.isalpha() for c in tag):
        raise BadField(f"{name} must be letters, digits and '_' (with a letter), at most {MAX_TAG_CHARS}", name)
    return tag


def _opt_room(frame: Dict[str, Any], name: str) -> Optional[RoomID]:
    return None if frame.get(name) is None else read_room_id(frame, name)


def _before(frame: Dict[str, Any]) -> Optional[int]:
    return read_int(frame, "before", None, 1, None)


def _limit(frame: Dict[str, Any], default: int = 20) -> int:
    return read_int(frame, "limit", default, 1, MAX_PAGE) or default


def _query(frame: Dict[str, Any]) -> str:
    query = read_str(frame, "query", min_len=1, max_len=MAX_QUERY_CHARS) or ""
    if not query.strip():
        raise BadField("query must not be blank", "query")
    return query


register_request("notifications", lambda f, rid: Notifications(
    rid, _before(f), _limit(f), read_bool(f, "unread_only", False)))
register_request("notifications_read", lambda f, rid: NotificationsRead(rid, read_int(f, "upto", None, 0, None)))
register_request("search", lambda f, rid: Search(
    rid, _query(f), _opt_room(f, "room_id"), _opt_room(f, "service_id"), _before(f), _limit(f)))
register_request("tag_posts", lambda f, rid: TagPosts(
    rid, read_room_id(f, "service_id"), read_tag(f), _before(f), _limit(f)))
register_request("trending", lambda f, rid: TrendingTags(rid, read_room_id(f, "service_id")))
register_request("tag_candidates", lambda f, rid: TagCandidates(rid, read_room_id(f, "service_id")))
register_request("tag_approve", lambda f, rid: TagApprove(rid, read_room_id(f, "service_id"), read_tag(f)))
register_request("tag_revoke", lambda f, rid: TagRevoke(rid, read_room_id(f, "service_id"), read_tag(f)))
