"""Room kinds, the room version, and the event types and memberships the ``ps1`` rules know.

These are plain string constants because events travel as dicts in federation form; the
``RoomKind`` enum is a ``str`` subclass, so ``RoomKind.CHAT == "chat"`` holds.
"""

from __future__ import annotations

import enum

# One definition of the room version and kinds: they are part of the event format.
from protocol.events import ROOM_KINDS, ROOM_VERSION

__all__ = [
    "ROOM_VERSION",
    "ROOM_KINDS",
    "RoomKind",
    "is_valid_kind",
    "CREATE",
    "MEMBER",
    "POWER_LEVELS",
    "JOIN_RULES",
    "NAME",
    "TOPIC",
    "MESSAGE",
    "REDACTION",
    "JOIN",
    "INVITE",
    "LEAVE",
    "BAN",
    "MEMBERSHIPS",
    "PUBLIC",
    "INVITE_ONLY",
    "JOIN_RULE_VALUES",
]



class RoomKind(str, enum.Enum):
    """A room kind; the value is what ``m.room.create`` carries in ``content.kind``."""

    CHAT = "chat"
    DM = "dm"
    FORUM = "forum"
    WALL = "wall"
    BLOG = "blog"
    SPACE = "space"


def is_valid_kind(kind: object) -> bool:
    """True iff ``kind`` is exactly one of the ``ROOM_KINDS`` strings."""
    return type(kind) is str and kind in ROOM_KINDS


# Event types (docs/protocol.md §2).
CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
NAME = "m.room.name"
TOPIC = "m.room.topic"
MESSAGE = "m.room.message"
REDACTION = "m.room.redaction"

# Membership values; ``ps1`` has no knock.
JOIN = "join"
INVITE = "invite"
LEAVE = "leave"
BAN = "ban"
MEMBERSHIPS = (JOIN, INVITE, LEAVE, BAN)

# Join rules; ``ps1`` has no knock and no restricted joins.
PUBLIC = "public"
INVITE_ONLY = "invite"
JOIN_RULE_VALUES = (PUBLIC, INVITE_ONLY)
