"""Services (spaces): request types, roles and the settings format (pure).

A service is a room of kind ``space``. Its members are the service's members; rooms of the
service carry ``"service": <service room ID>`` in their create event. Service state events:

- ``ps.service.settings`` (state_key ``""``): the settings below;
- ``ps.service.role`` (state_key = ``"_" + user ID``: auth rule G reserves state keys that
  start with ``@`` for their own user): ``{"role": ROLE}``;
- ``ps.service.child`` (state_key = room ID): ``{"kind": KIND}`` for each room of the service.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import attr

from protocol.errors import BadField
from protocol.events import CLIENT_ROOM_KINDS
from protocol.frames import (
    RequestId, read_room_id, read_str, read_user_id, register_request,
)
from protocol.ids import RoomID, UserID

__all__ = [
    "ROLES", "STAFF_ROLES", "role_key", "ROLE_LEVELS", "SERVICE_EVENT_LEVELS", "ROOM_EVENT_LEVELS",
    "role_level", "with_role_levels", "DEFAULT_SETTINGS", "validate_settings", "register_setting",
    "SETTINGS", "ROLE", "CHILD",
    "CreateService", "Services", "ServiceRooms", "ServiceAddMember", "ServiceSettings",
]

SETTINGS = "ps.service.settings"
ROLE = "ps.service.role"
CHILD = "ps.service.child"

ROLES = ("member", "carer", "peer", "clinician", "moderator", "admin")
"""Roles within one service: service user, relative/carer, experienced peer, and staff."""

STAFF_ROLES = frozenset({"clinician", "moderator", "admin"})

ROLE_LEVELS: Dict[str, int] = {
    "member": 0, "carer": 0, "peer": 10, "clinician": 50, "moderator": 60, "admin": 100,
}
"""The power level each role has in the service room and in every room of the service.

Members and carers are at ``users_default`` (0) and are not listed; peers (10) are listed so
clients can badge them; staff start at 50, the level every staff-only event type needs."""

SERVICE_EVENT_LEVELS: Dict[str, int] = {
    "ps.service.settings": 100, "ps.service.role": 50, "ps.service.child": 50,
    "m.room.power_levels": 100, "m.room.name": 100, "m.room.topic": 100,
}
"""Event levels of a service's own room: settings, renaming and power levels are for its
admins (100); roles and room links for staff (50). Enforced by the ``ps1`` auth rules."""

ROOM_EVENT_LEVELS: Dict[str, int] = {"ps.thread.state": 50}
"""Extra event levels in every room of a service: pinning and locking threads is staff work
(50); kick, ban and redacting others' events keep the room default of 50."""


def role_level(role: Optional[str]) -> int:
    """The power level of ``role`` (0 for None or an unknown role)."""
    return ROLE_LEVELS.get(role or "member", 0)


def with_role_levels(content: Dict[str, Any], levels: Dict[str, int],
                     events: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """Power-levels ``content`` with each user of ``levels`` set to that level (0: unlisted
    unless the room lists them higher for another reason, e.g. its creator) and ``events``
    merged in. Returns a new dict; the input is not changed."""
    out = dict(content)
    users = dict(out.get("users") or {})
    for user_id, level in levels.items():
        if level > 0:
            users[user_id] = level
        else:
            users.pop(user_id, None)
    out["users"] = users
    if events:
        out["events"] = {**(out.get("events") or {}), **events}
    return out


def role_key(user_id: str) -> str:
    """The state key of a user's ``ps.service.role`` event."""
    return "_" + user_id

DEFAULT_SETTINGS: Dict[str, Any] = {
    "kinds": list(CLIENT_ROOM_KINDS),
    "char_limits": {"chat": 4000, "dm": 4000, "forum": 10000, "wall": 2000, "blog": 20000},
    "trending": True,
    "member_dms": True,
}
"""Settings of a new service; ``service_settings`` changes any subset of them."""


_EXTRA_SETTINGS: Dict[str, Callable[[Any, str], Any]] = {}


def register_setting(key: str, default: Any, validate: Callable[[Any, str], Any]) -> None:
    """Add a per-service setting owned by a feature's protocol module (at import time).

    ``validate(value, field)`` returns the normalised value or raises ``BadField`` naming
    ``field`` (``"settings.<key>"``); ``default`` is what services without it get.
    """
    if key in DEFAULT_SETTINGS and key not in _EXTRA_SETTINGS:
        raise ValueError(f"setting {key!r} is built in")
    _EXTRA_SETTINGS[key] = validate
    DEFAULT_SETTINGS[key] = default


def validate_settings(value: Any, base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Merge ``value`` (a partial settings object) over ``base``; BadField names the bad key."""
    merged = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
              for k, v in (base or DEFAULT_SETTINGS).items()}
    if type(value) is not dict:
        raise BadField("settings must be an object", "settings")
    for key, item in value.items():
        field = f"settings.{key}"
        if key == "kinds":
            if type(item) is not list or not item or any(k not in CLIENT_ROOM_KINDS for k in item):
                raise BadField(f"{field} must be a non-empty list of: {', '.join(CLIENT_ROOM_KINDS)}", field)
            merged["kinds"] = sorted(set(item), key=CLIENT_ROOM_KINDS.index)
        elif key == "char_limits":
            if type(item) is not dict:
                raise BadField(f"{field} must be an object of kind: limit", field)
            for kind, limit in item.items():
                if kind not in CLIENT_ROOM_KINDS:
                    raise BadField(f"{field}.{kind} is not a room kind", f"{field}.{kind}")
                if type(limit) is not int or not 1 <= limit <= 60000:
                    raise BadField(f"{field}.{kind} must be an integer 1..60000", f"{field}.{kind}")
                merged["char_limits"][kind] = limit
        elif key in ("trending", "member_dms"):
            if type(item) is not bool:
                raise BadField(f"{field} must be true or false", field)
            merged[key] = item
        elif key in _EXTRA_SETTINGS:
            merged[key] = _EXTRA_SETTINGS[key](item, field)
        else:
            raise BadField(f"unknown setting {key!r}", field)
    return merged


_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class CreateService:
    """``create_service``: an admin creates a service."""

    id: RequestId
    name: str
    topic: Optional[str]
    settings: Optional[Dict[str, Any]]


@_frozen
class Services:
    """``services``: the services the caller belongs to (admins: all)."""

    id: RequestId


@_frozen
class ServiceRooms:
    """``service_rooms``: the rooms of one service the caller can see."""

    id: RequestId
    service_id: RoomID


@_frozen
class ServiceAddMember:
    """``service_add_member``: staff add a user to a service with a role."""

    id: RequestId
    service_id: RoomID
    user_id: UserID
    role: str


@_frozen
class ServiceSettings:
    """``service_settings``: an admin changes a service's settings."""

    id: RequestId
    service_id: RoomID
    settings: Dict[str, Any]


def _settings(frame: Dict[str, Any], required: bool) -> Optional[Dict[str, Any]]:
    value = frame.get("settings")
    if value is None:
        if required:
            raise BadField("settings is required", "settings")
        return None
    validate_settings(value)
    return value


def _role(frame: Dict[str, Any]) -> str:
    role = read_str(frame, "role", optional=True) or "member"
    if role not in ROLES:
        raise BadField(f"role must be one of: {', '.join(ROLES)}", "role")
    return role


register_request("create_service", lambda f, rid: CreateService(
    rid, read_str(f, "name", min_len=1, max_len=255), read_str(f, "topic", max_len=1000, optional=True),
    _settings(f, False)))
register_request("services", lambda f, rid: Services(rid))
register_request("service_rooms", lambda f, rid: ServiceRooms(rid, read_room_id(f, "service_id")))
register_request("service_add_member", lambda f, rid: ServiceAddMember(
    rid, read_room_id(f, "service_id"), read_user_id(f), _role(f)))
register_request("service_settings", lambda f, rid: ServiceSettings(
    rid, read_room_id(f, "service_id"), _settings(f, True)))
