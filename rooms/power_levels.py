"""Power levels: the defaults of federation.md §3.2 and a read-only view over PL content.

Decision (federation.md §3.2 leaves creator power OPEN): ``ps1`` keeps the room-version-11
meaning. The creator (and any ``additional_creators``) has level 100 only while the room has
no ``m.room.power_levels`` event; once one exists, every user's level, the creator's
included, comes from its ``users`` map or ``users_default``. Creators may therefore be listed
in ``users`` (the builder lists the creator at 100) and can be demoted like anyone else.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Mapping, Optional, Union

import attr

from protocol.errors import BadField
from protocol.ids import UserID

__all__ = [
    "CREATOR_LEVEL",
    "DEFAULTS",
    "SCALAR_KEYS",
    "MAX_LEVEL",
    "PowerLevels",
    "validate_power_levels_content",
]

CREATOR_LEVEL = 100
"""The level a creator has while the room has no power-levels event."""

DEFAULTS: Mapping[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}
"""The value of each scalar key when it is absent (or when there is no PL event at all)."""

SCALAR_KEYS = tuple(DEFAULTS)
"""The integer-valued top-level keys of power-levels content."""

MAX_LEVEL = 2**53 - 1
"""Largest magnitude a level may have (the canonical-JSON integer range)."""

_EMPTY: Mapping[str, Any] = {}
Creators = Union[str, AbstractSet[str], None]


def _int_or(value: object, default: int) -> int:
    return value if type(value) is int else default  # type: ignore[return-value]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class PowerLevels:
    """A read-only view over one ``m.room.power_levels`` content dict; ``None`` = no PL event."""

    content: Optional[Mapping[str, Any]] = None

    @property
    def exists(self) -> bool:
        """True iff the room has a power-levels event."""
        return self.content is not None

    def _scalar(self, key: str) -> int:
        content = self.content
        if content is None:
            return DEFAULTS[key]
        return _int_or(content.get(key), DEFAULTS[key])

    @property
    def users(self) -> Mapping[str, Any]:
        """The explicit per-user levels (empty without a PL event)."""
        if self.content is None:
            return _EMPTY
        users = self.content.get("users")
        return users if isinstance(users, dict) else _EMPTY

    @property
    def events(self) -> Mapping[str, Any]:
        """The explicit per-event-type levels (empty without a PL event)."""
        if self.content is None:
            return _EMPTY
        events = self.content.get("events")
        return events if isinstance(events, dict) else _EMPTY

    @property
    def users_default(self) -> int:
        """Level of a user not listed in ``users``."""
        return self._scalar("users_default")

    @property
    def events_default(self) -> int:
        """Level needed for a non-state event type not listed in ``events``."""
        return self._scalar("events_default")

    @property
    def state_default(self) -> int:
        """Level needed for a state event type not listed in ``events``."""
        return self._scalar("state_default")

    @property
    def ban(self) -> int:
        """Level needed to ban, or to unban (a leave for a banned target)."""
        return self._scalar("ban")

    @property
    def kick(self) -> int:
        """Level needed to set another user's membership to leave."""
        return self._scalar("kick")

    @property
    def redact(self) -> int:
        """Level needed to redact another server's users' events."""
        return self._scalar("redact")

    @property
    def invite(self) -> int:
        """Level needed to invite."""
        return self._scalar("invite")

    def user_level(self, user_id: str, creator: Creators = None) -> int:
        """The level of ``user_id``; ``creator`` (one ID or a set) matters only without a PL event."""
        if self.content is None:
            if creator is None:
                return DEFAULTS["users_default"]
            is_creator = user_id == creator if isinstance(creator, str) else user_id in creator
            return CREATOR_LEVEL if is_creator else DEFAULTS["users_default"]
        return _int_or(self.users.get(user_id), self.users_default)

    def event_level(self, event_type: str, is_state: bool) -> int:
        """The level needed to send an event of ``event_type`` (a state event iff ``is_state``)."""
        level = self.events.get(event_type)
        if type(level) is int:
            return level  # type: ignore[return-value]
        return self.state_default if is_state else self.events_default


def _bad_level(value: object) -> Optional[str]:
    if type(value) is not int:
        return f"must be an integer, not {_describe(value)}"
    if not -MAX_LEVEL <= value <= MAX_LEVEL:  # type: ignore[operator]
        return "is outside the range ±(2^53−1)"
    return None


def _describe(value: object) -> str:
    if type(value) is bool:
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if type(value) is str:
        return "a string"
    if type(value) is float:
        return "a floating-point number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def validate_power_levels_content(content: object) -> Optional[str]:
    """Why ``content`` is not valid power-levels content (§3.2 H), or ``None`` when it is."""
    if not isinstance(content, dict):
        return "power levels content must be an object"
    for key in SCALAR_KEYS:
        if key in content:
            problem = _bad_level(content[key])
            if problem:
                return f"power level '{key}' {problem}"
    if "events" in content:
        events = content["events"]
        if not isinstance(events, dict):
            return "power levels 'events' must be an object mapping event types to integers"
        for event_type, level in events.items():
            problem = _bad_level(level)
            if problem:
                return f"power level for event type '{event_type}' {problem}"
    if "users" in content:
        users = content["users"]
        if not isinstance(users, dict):
            return "power levels 'users' must be an object mapping user IDs to integers"
        for user_id, level in users.items():
            try:
                UserID.parse(user_id)
            except BadField:
                return f"power levels 'users' key {user_id!r} is not a valid user ID"
            problem = _bad_level(level)
            if problem:
                return f"power level for user {user_id} {problem}"
    return None
