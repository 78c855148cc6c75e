"""Staff access and unmasking (#5): request types, the moderation notice, pushes (pure).

Ops (docs/protocol.md §8.6):

- ``moderate_join {room_id, visible?}``, ``moderate_leave {room_id}``, ``moderating {}``:
  staff of a room's service (and server admins anywhere) observe a room without a
  membership (``visible: false``) or join it visibly as staff;
- ``member_card {room_id | service_id, user_id}``: pseudonymous facts about one member;
- ``unmask_request {service_id, user_id, reason_code, reason}``, ``unmask_approve
  {request_id}``, ``unmask_refuse {request_id, reason}``, ``unmask_view {request_id}``,
  ``unmask_requests {service_id, status?}``: the audited path to a real identity;
- ``audit_query {actor?, member?, action?, since_ts?, until_ts?, limit?, before?}``:
  server admins read the audit log.

The room state event ``ps.room.moderation`` (state_key ``""``) carries the moderation
notice every service room and DM shows: ``{"notice": TEXT, "service_id"?: ID}``. It never
names a moderator or says who is watching.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import attr

from protocol import spaces as S
from protocol.errors import BadField, MissingField
from protocol.frames import (
    RequestId, read_bool, read_int, read_room_id, read_str, read_user_id, register_request,
)
from protocol.ids import RoomID, UserID

__all__ = [
    "NOTICE", "notice_text", "UNMASK_STATUSES", "SECOND_APPROVER", "MAX_AUDIT_LIMIT", "PENDING_TTL",
    "ModerateJoin", "ModerateLeave", "Moderating", "MemberCard",
    "UnmaskRequest", "UnmaskApprove", "UnmaskRefuse", "UnmaskView", "UnmaskRequests", "AuditQuery",
    "unmask_pending_frame", "unmask_decided_frame",
]

NOTICE = "ps.room.moderation"
"""The state event type of the moderation notice (state_key ``""``)."""

UNMASK_STATUSES = ("pending", "approved", "refused", "expired")
SECOND_APPROVER = "unmask_requires_second_approver"
"""Per-service setting: an unmask needs a second staff member's approval (default true)."""
MAX_AUDIT_LIMIT = 1000
MAX_REASON = 1000
MAX_REQUEST_ID = 64


def notice_text(service_name: Optional[str]) -> str:
    """The notice of a room in ``service_name`` (None: a DM outside any service)."""
    team = f"the {service_name} team" if service_name else "this server's moderators"
    return (f"This space is moderated by {team}. Moderators can read conversations here to keep "
            "people safe; they never reveal who you are except through a recorded, reviewed request.")


def _bool_setting(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise BadField(f"{field} must be true or false", field)
    return value


S.register_setting(SECOND_APPROVER, True, _bool_setting)

PENDING_TTL = "unmask_pending_ttl_ms"
"""Per-service setting: an unmask request nobody decides expires this long after it was made."""
DEFAULT_PENDING_TTL_MS = 2 * 3600 * 1000
MAX_PENDING_TTL_MS = 7 * 24 * 3600 * 1000


def _pending_ttl_setting(value: Any, field: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_PENDING_TTL_MS:
        raise BadField(f"{field} must be a whole number of milliseconds from 1 to {MAX_PENDING_TTL_MS}", field)
    return value


S.register_setting(PENDING_TTL, DEFAULT_PENDING_TTL_MS, _pending_ttl_setting)

_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class ModerateJoin:
    """``moderate_join``: observe a room (``visible`` false) or join it visibly as staff."""

    id: RequestId
    room_id: RoomID
    visible: bool


@_frozen
class ModerateLeave:
    """``moderate_leave``: stop observing a room (or leave a visible staff join)."""

    id: RequestId
    room_id: RoomID


@_frozen
class Moderating:
    """``moderating``: the rooms the caller observes or joined as staff."""

    id: RequestId


@_frozen
class MemberCard:
    """``member_card``: one member's pseudonymous card, for staff of the service."""

    id: RequestId
    room_id: Optional[RoomID]
    service_id: Optional[RoomID]
    user_id: UserID


@_frozen
class UnmaskRequest:
    """``unmask_request``: staff ask to see one member's real identity, with a reason."""

    id: RequestId
    service_id: RoomID
    user_id: UserID
    reason_code: str
    reason: str


@_frozen
class UnmaskApprove:
    """``unmask_approve``: a second staff member approves a pending request."""

    id: RequestId
    request_id: str


@_frozen
class UnmaskRefuse:
    """``unmask_refuse``: a second staff member (or the requester, withdrawing) refuses it."""

    id: RequestId
    request_id: str
    reason: str


@_frozen
class UnmaskView:
    """``unmask_view``: the requester reads the identity of an approved, unexpired request."""

    id: RequestId
    request_id: str


@_frozen
class UnmaskRequests:
    """``unmask_requests``: the service's unmask requests (newest first)."""

    id: RequestId
    service_id: RoomID
    status: Optional[str]


@_frozen
class AuditQuery:
    """``audit_query``: server admins page the audit log, newest first."""

    id: RequestId
    actor: Optional[str]
    member: Optional[str]
    action: Optional[str]
    since_ts: Optional[int]
    until_ts: Optional[int]
    limit: int
    before: Optional[int]


def unmask_pending_frame(request: Dict[str, Any]) -> Dict[str, Any]:
    """The push to a service's staff when a request awaits a second approver (no identity)."""
    return {"op": "unmask_pending", "request": request}


def unmask_decided_frame(request: Dict[str, Any]) -> Dict[str, Any]:
    """The push to the requester when their request is approved or refused (no identity)."""
    return {"op": "unmask_decided", "request": request}


def _optional_room_id(frame: Dict[str, Any], name: str) -> Optional[RoomID]:
    return None if frame.get(name) is None else read_room_id(frame, name)


def _card(frame: Dict[str, Any], rid: RequestId) -> MemberCard:
    room_id, service_id = _optional_room_id(frame, "room_id"), _optional_room_id(frame, "service_id")
    if room_id is None and service_id is None:
        raise MissingField("room_id or service_id is required", "room_id")
    return MemberCard(rid, room_id, service_id, read_user_id(frame))


def _request_id(frame: Dict[str, Any]) -> str:
    return read_str(frame, "request_id", min_len=1, max_len=MAX_REQUEST_ID)


def _status(frame: Dict[str, Any]) -> Optional[str]:
    status = read_str(frame, "status", optional=True)
    if status is not None and status not in UNMASK_STATUSES:
        raise BadField(f"status must be one of: {', '.join(UNMASK_STATUSES)}", "status")
    return status


def _reason_code(frame: Dict[str, Any]) -> str:
    code = read_str(frame, "reason_code", min_len=1, max_len=64)
    if not all(c.isalnum() or c == "_" for c in code):
        raise BadField("reason_code must be a configured reason code", "reason_code")
    return code


def _audit_query(frame: Dict[str, Any], rid: RequestId) -> AuditQuery:
    since = read_int(frame, "since_ts", None, 0, None)
    until = read_int(frame, "until_ts", None, 0, None)
    if since is not None and until is not None and until < since:
        raise BadField("until_ts must not be before since_ts", "until_ts")
    return AuditQuery(
        rid, read_str(frame, "actor", min_len=1, max_len=255, optional=True),
        read_str(frame, "member", min_len=1, max_len=255, optional=True),
        read_str(frame, "action", min_len=1, max_len=100, optional=True),
        since, until, read_int(frame, "limit", 100, 1, MAX_AUDIT_LIMIT),
        read_int(frame, "before", None, 1, None))


register_request("moderate_join", lambda f, rid: ModerateJoin(rid, read_room_id(f), read_bool(f, "visible", False)))
register_request("moderate_leave", lambda f, rid: ModerateLeave(rid, read_room_id(f)))
register_request("moderating", lambda f, rid: Moderating(rid))
register_request("member_card", _card)
register_request("unmask_request", lambda f, rid: UnmaskRequest(
    rid, read_room_id(f, "service_id"), read_user_id(f), _reason_code(f),
    read_str(f, "reason", min_len=1, max_len=MAX_REASON)))
register_request("unmask_approve", lambda f, rid: UnmaskApprove(rid, _request_id(f)))
register_request("unmask_refuse", lambda f, rid: UnmaskRefuse(
    rid, _request_id(f), read_str(f, "reason", min_len=1, max_len=MAX_REASON)))
register_request("unmask_view", lambda f, rid: UnmaskView(rid, _request_id(f)))
register_request("unmask_requests", lambda f, rid: UnmaskRequests(rid, read_room_id(f, "service_id"), _status(f)))
register_request("audit_query", _audit_query)
