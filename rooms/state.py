"""The current state of one room: a mutable map (type, state_key) → event, cheap to update.

``RoomState`` sits on the hot path: ``apply`` is O(1), the joined set is kept incrementally,
and the power-levels view is cached until the next power-levels event. It is deliberately
mutable and shared by reference; take a snapshot with ``copy()`` (O(number of state keys))
before handing it to code that must not see later updates. Events are plain dicts in
federation form plus an ``event_id`` key; the state never mutates them.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Set, Tuple

from rooms.kinds import CREATE, INVITE, JOIN, JOIN_RULES, INVITE_ONLY, MEMBER, NAME, POWER_LEVELS, TOPIC
from rooms.power_levels import PowerLevels

__all__ = ["RoomState", "StateKey"]

StateKey = Tuple[str, str]
"""A state slot: (event type, state_key)."""

Event = Dict[str, Any]


class RoomState:
    """The current state of one room; ``apply`` is O(1), ``copy`` is explicit."""

    __slots__ = ("_events", "_joined", "_joined_snapshot", "_create", "_room_id", "_pl")

    def __init__(self) -> None:
        self._events: Dict[StateKey, Event] = {}
        self._joined: Set[str] = set()
        self._joined_snapshot: Optional[FrozenSet[str]] = frozenset()
        self._create: Optional[Event] = None
        self._room_id: Optional[str] = None
        self._pl: Optional[PowerLevels] = PowerLevels(None)

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> "RoomState":
        """A state built by applying ``events`` in order (later events win their slot)."""
        state = cls()
        for event in events:
            state.apply(event)
        return state

    # -- updates ---------------------------------------------------------------------

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Put a state event into its slot, O(1); returns False (and ignores it) for non-state events.

        The caller applies only events the auth rules accepted; ``apply`` does not check.
        """
        state_key = event.get("state_key")
        if type(state_key) is not str:
            return False
        event_type = event.get("type")
        if type(event_type) is not str:
            return False
        key = (event_type, state_key)
        self._events[key] = event  # type: ignore[assignment]
        if event_type == MEMBER:
            self._update_joined(state_key, event)
        elif event_type == POWER_LEVELS and state_key == "":
            self._pl = None
        elif event_type == CREATE and state_key == "":
            self._create = event  # type: ignore[assignment]
            event_id = event.get("event_id")
            self._room_id = "!" + event_id[1:] if type(event_id) is str and event_id else None
        return True

    def _update_joined(self, user_id: str, event: Mapping[str, Any]) -> None:
        content = event.get("content")
        joined = isinstance(content, dict) and content.get("membership") == JOIN
        if joined:
            if user_id not in self._joined:
                self._joined.add(user_id)
                self._joined_snapshot = None
        elif user_id in self._joined:
            self._joined.discard(user_id)
            self._joined_snapshot = None

    def copy(self) -> "RoomState":
        """An independent snapshot: later ``apply`` calls on either side do not affect the other."""
        other = RoomState.__new__(RoomState)
        other._events = dict(self._events)
        other._joined = set(self._joined)
        other._joined_snapshot = self._joined_snapshot
        other._create = self._create
        other._room_id = self._room_id
        other._pl = self._pl
        return other

    # -- generic access --------------------------------------------------------------

    def get(self, event_type: str, state_key: str = "") -> Optional[Event]:
        """The event in slot (``event_type``, ``state_key``), or ``None``."""
        return self._events.get((event_type, state_key))

    def __contains__(self, key: object) -> bool:
        return key in self._events

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[StateKey]:
        return iter(self._events)

    def items(self) -> Iterable[Tuple[StateKey, Event]]:
        """Every (slot, event) pair; a live view, do not apply while iterating."""
        return self._events.items()

    def event_ids(self) -> List[str]:
        """The IDs of every event in the state, in slot insertion order."""
        return [event["event_id"] for event in self._events.values()]

    # -- the create event -------------------------------------------------------------

    @property
    def create_event(self) -> Optional[Event]:
        """The room's ``m.room.create`` event, or ``None`` before it is applied."""
        return self._create

    @property
    def room_id(self) -> Optional[str]:
        """The room ID: ``!`` + the create event's ID body (R12 style), or ``None``."""
        return self._room_id

    @property
    def creator(self) -> Optional[str]:
        """The user who sent the create event, or ``None``."""
        create = self._create
        return create.get("sender") if create is not None else None

    @property
    def creators(self) -> FrozenSet[str]:
        """The creator plus any well-formed ``additional_creators`` (levels without a PL event)."""
        create = self._create
        if create is None:
            return frozenset()
        found = {create.get("sender")}
        content = create.get("content")
        extra = content.get("additional_creators") if isinstance(content, dict) else None
        if isinstance(extra, list):
            found.update(user for user in extra if type(user) is str)
        return frozenset(user for user in found if type(user) is str)

    @property
    def kind(self) -> Optional[str]:
        """The room kind from the create event (``chat``, ``dm`` ...), or ``None``."""
        return self._content_str(CREATE, "kind")

    @property
    def federate(self) -> bool:
        """False iff the create event says ``m.federate: false``."""
        create = self._create
        content = create.get("content") if create is not None else None
        return not (isinstance(content, dict) and content.get("m.federate") is False)

    # -- derived views ----------------------------------------------------------------

    def power_levels(self) -> PowerLevels:
        """The current power levels (defaults when the room has no PL event); cached."""
        pl = self._pl
        if pl is None:
            event = self._events.get((POWER_LEVELS, ""))
            content = event.get("content") if event is not None else None
            pl = PowerLevels(content if isinstance(content, dict) else ({} if event else None))
            self._pl = pl
        return pl

    def user_level(self, user_id: str) -> int:
        """``user_id``'s current power level (creators get 100 while there is no PL event)."""
        pl = self.power_levels()
        if pl.exists:
            return pl.user_level(user_id)
        return pl.user_level(user_id, self.creators)

    def membership(self, user_id: str) -> Optional[str]:
        """``user_id``'s current membership (``join`` ``invite`` ``leave`` ``ban``), or ``None``."""
        event = self._events.get((MEMBER, user_id))
        if event is None:
            return None
        content = event.get("content")
        value = content.get("membership") if isinstance(content, dict) else None
        return value if type(value) is str else None

    def is_joined(self, user_id: str) -> bool:
        """True iff ``user_id`` is currently joined; O(1)."""
        return user_id in self._joined

    def joined_members(self) -> FrozenSet[str]:
        """The joined users; O(1) unless membership changed since the last call."""
        snapshot = self._joined_snapshot
        if snapshot is None:
            snapshot = self._joined_snapshot = frozenset(self._joined)
        return snapshot

    def joined_count(self) -> int:
        """How many users are joined; O(1)."""
        return len(self._joined)

    def join_rule(self) -> str:
        """The current join rule; ``invite`` when the room has no (well-formed) join-rules event."""
        return self._content_str(JOIN_RULES, "join_rule") or INVITE_ONLY

    @property
    def name(self) -> Optional[str]:
        """The room name, or ``None``."""
        return self._content_str(NAME, "name")

    @property
    def topic(self) -> Optional[str]:
        """The room topic, or ``None``."""
        return self._content_str(TOPIC, "topic")

    def _content_str(self, event_type: str, field: str) -> Optional[str]:
        event = self._events.get((event_type, ""))
        if event is None:
            return None
        content = event.get("content")
        value = content.get(field) if isinstance(content, dict) else None
        return value if type(value) is str else None

    # -- auth-event selection (federation.md §3.1) -------------------------------------

    def auth_event_ids_for(
        self, event_type: str, state_key: Optional[str], sender: str, content: Mapping[str, Any]
    ) -> List[str]:
        """The ``auth_events`` for a new event: current PL, the sender's member event, and for
        member events the target's member event and (join/invite) the join rules.

        Never the create event: in ``ps1`` it is implied by ``room_id``. Slots that are empty
        are skipped; the order is PL, sender, target, join rules.
        """
        events = self._events
        ids: List[str] = []
        pl = events.get((POWER_LEVELS, ""))
        if pl is not None:
            ids.append(pl["event_id"])
        own = events.get((MEMBER, sender))
        if own is not None:
            ids.append(own["event_id"])
        if event_type == MEMBER and type(state_key) is str:
            if state_key != sender:
                target = events.get((MEMBER, state_key))
                if target is not None:
                    ids.append(target["event_id"])
            if isinstance(content, dict) and content.get("membership") in (JOIN, INVITE):
                rules = events.get((JOIN_RULES, ""))
                if rules is not None:
                    ids.append(rules["event_id"])
        return ids

    def __repr__(self) -> str:
        return f"<RoomState {self._room_id} {len(self._events)} slots, {len(self._joined)} joined>"
