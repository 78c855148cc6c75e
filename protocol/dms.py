"""DMs, typing, read markers, unread counts and published limits: request types (pure).

A DM is a room of kind ``dm`` whose create event names its two parties in
``content.dm_users`` (sorted user IDs). Typing and read-marker pushes are ephemeral frames
without an ``id``: ``{"op": "typing", ...}`` and ``{"op": "read_marker", ...}``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import attr

from protocol.errors import BadField, MissingField
from protocol.frames import (
    RequestId, read_bool, read_int, read_room_id, read_user_id, register_request,
)
from protocol.ids import RoomID, UserID

__all__ = [
    "DM_USERS", "MAX_UNREAD", "MAX_ROOM_IDS", "typing_frame", "read_marker_frame",
    "CreateDm", "Typing", "MarkRead", "Unread", "Limits",
]

DM_USERS = "dm_users"
"""Key of the create event's content that lists a DM's two parties."""

MAX_UNREAD = 99
"""Unread counts are exact up to this number; a count of MAX_UNREAD means "this many or more"."""

MAX_ROOM_IDS = 200
"""The most room IDs one ``unread`` request may name."""

MAX_POS = 2**53 - 1

_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class CreateDm:
    """``create_dm``: open (or reuse) the one-to-one room with ``user_id``."""

    id: RequestId
    user_id: UserID
    service_id: Optional[RoomID]


@_frozen
class Typing:
    """``typing``: the caller started (``typing: true``) or stopped typing in a room."""

    id: RequestId
    room_id: RoomID
    typing: bool


@_frozen
class MarkRead:
    """``mark_read``: move the caller's read marker in a room forward (never back)."""

    id: RequestId
    room_id: RoomID
    pos: Optional[int]


@_frozen
class Unread:
    """``unread``: unread counts for the given rooms (default: every joined room)."""

    id: RequestId
    room_ids: Optional[List[RoomID]]


@_frozen
class Limits:
    """``limits``: the character limits for a room, or the server's defaults."""

    id: RequestId
    room_id: Optional[RoomID]


def typing_frame(room_id: str, typers: Dict[str, str]) -> Dict[str, Any]:
    """The ``typing`` push: who is typing in ``room_id`` now (user ID -> pseudonym)."""
    ids = sorted(typers)
    return {"op": "typing", "room_id": room_id, "user_ids": ids,
            "pseudonyms": {u: typers[u] for u in ids}}


def read_marker_frame(room_id: str, pos: int) -> Dict[str, Any]:
    """The ``read_marker`` push sent to the caller's other devices."""
    return {"op": "read_marker", "room_id": room_id, "pos": pos}


def _optional_room_id(frame: Dict[str, Any], name: str) -> Optional[RoomID]:
    if frame.get(name) is None:
        return None
    return read_room_id(frame, name)


def _room_ids(frame: Dict[str, Any]) -> Optional[List[RoomID]]:
    value = frame.get("room_ids")
    if value is None:
        return None
    if type(value) is not list:
        raise BadField("room_ids must be a list of room IDs", "room_ids")
    if len(value) > MAX_ROOM_IDS:
        raise BadField(f"room_ids may name at most {MAX_ROOM_IDS} rooms", "room_ids")
    return [RoomID.parse(item, field="room_ids") for item in value]


def _typing_flag(frame: Dict[str, Any]) -> bool:
    if frame.get("typing") is None:
        raise MissingField("typing is required (true or false)", "typing")
    return read_bool(frame, "typing", False)


register_request("create_dm", lambda f, rid: CreateDm(
    rid, read_user_id(f), _optional_room_id(f, "service_id")))
register_request("typing", lambda f, rid: Typing(rid, read_room_id(f), _typing_flag(f)))
register_request("mark_read", lambda f, rid: MarkRead(
    rid, read_room_id(f), read_int(f, "pos", None, 0, MAX_POS)))
register_request("unread", lambda f, rid: Unread(rid, _room_ids(f)))
register_request("limits", lambda f, rid: Limits(rid, _optional_room_id(f, "room_id")))
