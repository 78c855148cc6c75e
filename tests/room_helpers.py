"""Shared helpers for the rooms/ tests: event IDs of the right shape and a small room driver.

Events are dicts in federation form plus ``event_id``. IDs are placeholders with the shape of a
``ps1`` reference hash (``$`` + 43 URL-safe characters), not real hashes: rooms/ never
recomputes them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rooms.auth import check
from rooms.builder import default_power_levels
from rooms.kinds import CREATE, JOIN, JOIN_RULES, MEMBER, POWER_LEVELS, ROOM_VERSION
from rooms.state import RoomState

__all__ = [
    "ALICE", "BOB", "CAROL", "DAVE", "ERIN", "MISSING",
    "fake_event_id", "make_event", "Room",
]

ALICE = "@alice:a.example"  # the creator in most tests
BOB = "@bob:a.example"
CAROL = "@carol:b.example"
DAVE = "@dave:b.example"
ERIN = "@erin:a.example"

MISSING: Any = object()
"""Marks an absent ``state_key`` (a non-state event) or an absent field."""

_ids = itertools.count()
Event = Dict[str, Any]


def fake_event_id(seed: Optional[str] = None) -> str:
    """A fresh ID shaped like a ``ps1`` event ID; the same ``seed`` gives the same ID."""
    data = (seed if seed is not None else f"event-{next(_ids)}").encode()
    return "$" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_event(
    event_type: str,
    sender: str,
    content: Mapping[str, Any],
    *,
    state_key: Any = MISSING,
    room_id: Any = MISSING,
    prev_events: Optional[List[str]] = None,
    auth_events: Optional[List[str]] = None,
    depth: int = 1,
    event_id: Optional[str] = None,
) -> Event:
    """One event dict in federation form with a placeholder ``event_id``."""
    event: Event = {
        "type": event_type,
        "sender": sender,
        "content": dict(content),
        "prev_events": list(prev_events or []),
        "auth_events": list(auth_events or []),
        "depth": depth,
        "origin_server_ts": 1_763_712_000_000 + depth,
        "hashes": {"sha256": "x" * 43},
        "signatures": {},
    }
    if room_id is not MISSING:
        event["room_id"] = room_id
    if state_key is not MISSING:
        event["state_key"] = state_key
    event["event_id"] = event_id or fake_event_id()
    return event


class Room:
    """Drives one room: builds events chained on the latest one, checks and applies them.

    ``Room()`` is a ``chat`` room created by ALICE with the builder's power levels; ``levels``
    adds ``users`` entries, ``pl`` overrides other power-level keys, ``members`` forces
    memberships (join/leave by the user, invite/ban by the creator) without auth checks.
    """

    def __init__(
        self,
        *,
        creator: str = ALICE,
        kind: str = "chat",
        public: bool = False,
        levels: Optional[Mapping[str, int]] = None,
        pl: Optional[Mapping[str, Any]] = None,
        members: Optional[Mapping[str, str]] = None,
        create_extra: Optional[Mapping[str, Any]] = None,
        with_power_levels: bool = True,
        bare: bool = False,
    ) -> None:
        self.creator = creator
        self.state = RoomState()
        self.depth = 0
        self.last: List[str] = []
        content = {"room_version": ROOM_VERSION, "kind": kind, **(create_extra or {})}
        self.create = make_event(CREATE, creator, content, state_key="", depth=1)
        self.room_id = "!" + self.create["event_id"][1:]
        self._apply(self.create)
        if bare:
            return
        self.send(MEMBER, creator, {"membership": JOIN, "pseudonym": "creator"}, state_key=creator)
        if with_power_levels:
            content = default_power_levels(creator, kind)
            content.update(pl or {})
            content["users"] = {**content["users"], **(levels or {})}
            self.send(POWER_LEVELS, creator, content, state_key="")
        self.send(JOIN_RULES, creator, {"join_rule": "public" if public else "invite"}, state_key="")
        for user, membership in (members or {}).items():
            sender = user if membership in ("join", "leave") else creator
            self.force(MEMBER, sender, {"membership": membership, "pseudonym": user[1:4]}, state_key=user)

    def _apply(self, event: Event) -> Event:
        self.state.apply(event)
        self.depth = event["depth"]
        self.last = [event["event_id"]]
        return event

    def build(self, event_type: str, sender: str, content: Mapping[str, Any], /, state_key: Any = MISSING, **overrides: Any) -> Event:
        """An event on top of the latest one, with auth events chosen by the selection rule."""
        auth = self.state.auth_event_ids_for(event_type, None if state_key is MISSING else state_key, sender, content)
        event = make_event(
            event_type, sender, content, state_key=state_key, room_id=self.room_id,
            prev_events=self.last, auth_events=auth, depth=self.depth + 1,
        )
        for key, value in overrides.items():
            if value is MISSING:
                event.pop(key, None)
            else:
                event[key] = value
        return event

    def ev(self, event_type: str, sender: str, content: Mapping[str, Any], /, state_key: Any = MISSING, **overrides: Any) -> Tuple[Event, RoomState]:
        """(event, state) ready for ``check``; nothing is applied."""
        return self.build(event_type, sender, content, state_key, **overrides), self.state

    def member(self, sender: str, target: str, membership: Any, **overrides: Any) -> Tuple[Event, RoomState]:
        """(member event, state) ready for ``check``; nothing is applied."""
        return self.ev(MEMBER, sender, {"membership": membership, "pseudonym": "p"}, target, **overrides)

    def send(self, event_type: str, sender: str, content: Mapping[str, Any], /, state_key: Any = MISSING, **overrides: Any) -> Event:
        """Build, require ``check`` to allow, and apply."""
        event = self.build(event_type, sender, content, state_key, **overrides)
        result = check(event, self.state)
        assert result.allowed, f"expected {event_type} from {sender} to be allowed: {result}"
        return self._apply(event)

    def force(self, event_type: str, sender: str, content: Mapping[str, Any], /, state_key: Any = MISSING, **overrides: Any) -> Event:
        """Build and apply without checking (to set up a state)."""
        return self._apply(self.build(event_type, sender, content, state_key, **overrides))

    def set_levels(self, **changes: Any) -> Event:
        """Force a new power-levels event: the current content with ``changes`` merged in."""
        current = self.state.get(POWER_LEVELS, "")
        content = dict(current["content"]) if current else {}
        content.update(changes)
        return self.force(POWER_LEVELS, self.creator, content, state_key="")
