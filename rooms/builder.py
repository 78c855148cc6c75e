"""Pure helpers the server uses to create a room: the initial state events, in order.

The server turns each (type, state_key, content) triple into a signed event, chaining
``prev_events`` and choosing ``auth_events`` with ``RoomState.auth_event_ids_for``; each
event passes ``rooms.auth.check`` against the state built from the ones before it.

Choices (federation.md §3.2 and docs/product.md leave them open):

- power levels: the creator is listed at 100 (``ps1`` keeps R11 creator semantics, see
  ``rooms.power_levels``); ``users_default`` and ``events_default`` 0 so members can talk;
  ``state_default``, ``kick``, ``ban`` and ``redact`` 50 (moderators); renaming and
  re-topicing 50; changing power levels 100.
- ``invite``: 0 in ``chat`` and ``forum`` (members bring peers in); 50 in ``wall`` and
  ``blog`` (the owner and moderators curate who may comment in a private one); 100 in
  ``dm`` (only the creator invites the other party; a DM never grows into a group).
- a ``dm`` is never public; ``m.federate`` is left at its default (true).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from protocol.errors import BadField
from protocol.ids import UserID
from rooms.power_levels import DEFAULTS
from rooms.kinds import (
    CREATE, JOIN, JOIN_RULES, MEMBER, NAME, POWER_LEVELS, PUBLIC, INVITE_ONLY, ROOM_KINDS,
    ROOM_VERSION, TOPIC, RoomKind, is_valid_kind,
)

__all__ = ["initial_state", "default_power_levels", "INVITE_LEVEL_BY_KIND"]

INVITE_LEVEL_BY_KIND: Dict[str, int] = {
    RoomKind.CHAT.value: 0,
    RoomKind.FORUM.value: 0,
    RoomKind.WALL.value: 50,
    RoomKind.BLOG.value: 50,
    RoomKind.DM.value: 100,
    RoomKind.SPACE.value: 50,
}
"""The ``invite`` power level a new room of each kind starts with."""

StateTriple = Tuple[str, str, Dict[str, Any]]


def default_power_levels(creator: str, kind: str) -> Dict[str, Any]:
    """The ``m.room.power_levels`` content a new room of ``kind`` created by ``creator`` starts with."""
    return {
        **DEFAULTS,
        "users": {creator: 100},
        "invite": INVITE_LEVEL_BY_KIND[kind],
        "events": {NAME: 50, TOPIC: 50, POWER_LEVELS: 100},
    }


def initial_state(
    creator: str, kind: str, name: str, topic: Optional[str], public: bool, pseudonym: str
) -> List[StateTriple]:
    """The (type, state_key, content) triples that open a room, in the order they must be sent.

    create, the creator's join, power levels, join rules, name, and the topic if given.
    Raises ``BadField`` (naming the field) for a bad creator, kind, name, topic or ``public``.
    """
    UserID.parse(creator, "creator")
    if not is_valid_kind(kind):
        raise BadField(f"kind must be one of: {', '.join(ROOM_KINDS)}", "kind")
    if type(name) is not str:
        raise BadField("name must be a string", "name")
    if topic is not None and type(topic) is not str:
        raise BadField("topic must be a string", "topic")
    if type(public) is not bool:
        raise BadField("public must be true or false", "public")
    if type(pseudonym) is not str:
        raise BadField("pseudonym must be a string", "pseudonym")
    if kind == RoomKind.DM.value and public:
        raise BadField("a dm room cannot be public", "public")
    triples: List[StateTriple] = [
        (CREATE, "", {"room_version": ROOM_VERSION, "kind": kind}),
        (MEMBER, creator, {"membership": JOIN, "pseudonym": pseudonym}),
        (POWER_LEVELS, "", default_power_levels(creator, kind)),
        (JOIN_RULES, "", {"join_rule": PUBLIC if public else INVITE_ONLY}),
        (NAME, "", {"name": name}),
    ]
    if topic is not None:
        triples.append((TOPIC, "", {"topic": topic}))
    return triples
