"""The ``ps1`` authorisation rules (federation.md §3.2): ``check(event, state)`` → Allowed | Denied.

``state`` is the room state the event is checked against (before the event: its auth events,
the state at its prev_events, or the current state; the receive pipeline runs all three).
Events are dicts in federation form with an ``event_id`` key. Every rule denial carries
errcode ``forbidden``; input that is not a well-formed ``ps1`` event gets ``bad_event``.
Reasons are sentences meant for the user.

Deliberate tightenings of the rules as written (all servers run this code, so they agree):

- a join must always be sent by the user joining, including the creator's first join;
- the creator's first-join shortcut (only prev event = the create event) applies only while
  the creator has no membership yet, so a banned creator cannot rejoin by pointing at it;
- ``m.room.create`` and ``m.room.power_levels`` must have the empty state_key, a create
  must carry a valid ``kind`` and ``room_version: "ps1"``, and a redaction's ``content.redacts``
  must be an event ID;
- redactions are subject to E (sender joined) and F (the ``m.room.redaction`` level); whether
  one is *applied* is ``check_redaction_applies``.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar, Mapping, Optional, Set, Tuple, Union

import attr

from protocol.errors import ERROR_CODES, BadField, SharonError
from protocol.ids import MAX_ID_BYTES, UserID
from rooms.kinds import (
    BAN, CREATE, INVITE, INVITE_ONLY, JOIN, JOIN_RULES, LEAVE, MEMBER, POWER_LEVELS, PUBLIC,
    REDACTION, ROOM_KINDS, ROOM_VERSION, is_valid_kind,
)
from rooms.power_levels import SCALAR_KEYS, validate_power_levels_content
from rooms.state import RoomState

__all__ = [
    "Allowed",
    "ALLOWED",
    "Denied",
    "FORBIDDEN",
    "BAD_EVENT",
    "check",
    "check_auth_events",
    "check_with_auth_events",
    "check_redaction_applies",
]

FORBIDDEN = "forbidden"
BAD_EVENT = "bad_event"
_MAX_PREV_EVENTS = 20
_MAX_AUTH_EVENTS = 10
_EVENT_ID_RE = re.compile(r"^\$[A-Za-z0-9_\-]{43}$")


@attr.s(frozen=True, slots=True)
class Allowed:
    """The rules accept the event; use the ``ALLOWED`` instance."""

    allowed: ClassVar[bool] = True


ALLOWED = Allowed()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Denied:
    """The rules reject the event: ``reason`` is for the user, ``errcode`` is stable."""

    reason: str
    errcode: str = FORBIDDEN
    allowed: ClassVar[bool] = False

    def to_error(self) -> SharonError:
        """The ``protocol.errors`` exception to report (``Forbidden`` or ``BadEvent``)."""
        return ERROR_CODES.get(self.errcode, SharonError)(self.reason)


Result = Union[Allowed, Denied]
Event = Mapping[str, Any]
EventMap = Mapping[str, Event]


def _bad(reason: str) -> Denied:
    return Denied(reason, BAD_EVENT)


@functools.lru_cache(maxsize=8192)
def _valid_user_id(value: str) -> bool:
    try:
        UserID.parse(value)
    except BadField:
        return False
    return True


def _is_user_id(value: object) -> bool:
    return type(value) is str and _valid_user_id(value)  # type: ignore[arg-type]


def _domain(user_id: str) -> str:
    return user_id.partition(":")[2]


def _short_str(value: object) -> bool:
    if type(value) is not str:
        return False
    return len(value.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES  # type: ignore[attr-defined]


def _id_list_problem(event: Mapping[str, Any], field: str, limit: int) -> Optional[str]:
    ids = event.get(field)
    if not isinstance(ids, list):
        return f"event '{field}' must be a list of event IDs"
    if len(ids) > limit:
        return f"event '{field}' lists {len(ids)} events; at most {limit} are allowed"
    for event_id in ids:
        if type(event_id) is not str or not _EVENT_ID_RE.match(event_id):
            return f"event '{field}' must contain only event IDs ('$' + 43 URL-safe characters)"
    if len(set(ids)) != len(ids):
        return f"event '{field}' lists the same event twice"
    return None


def _envelope_problem(event: object) -> Optional[str]:
    """Why ``event`` is not a well-formed ``ps1`` event, or ``None``."""
    if not isinstance(event, dict):
        return "an event must be an object"
    event_type = event.get("type")
    if not _short_str(event_type) or not event_type:
        return "event 'type' must be a non-empty string of at most 255 bytes"
    if not _is_user_id(event.get("sender")):
        return "event 'sender' must be a valid user ID"
    if "state_key" in event and not _short_str(event["state_key"]):
        return "event 'state_key' must be a string of at most 255 bytes"
    content = event.get("content")
    if not isinstance(content, dict):
        return "event 'content' must be an object"
    if event_type == CREATE:
        if event.get("state_key") != "":
            return "m.room.create must be a state event with an empty state_key"
        for field in ("prev_events", "auth_events"):
            if field in event and not isinstance(event[field], list):
                return f"event '{field}' must be a list of event IDs"
        return None
    if not _short_str(event.get("room_id")):
        return "event 'room_id' must be a room ID"
    problem = _id_list_problem(event, "prev_events", _MAX_PREV_EVENTS)
    problem = problem or _id_list_problem(event, "auth_events", _MAX_AUTH_EVENTS)
    if problem:
        return problem
    if not event["prev_events"]:
        return "event 'prev_events' must name at least one earlier event"
    if event_type == POWER_LEVELS and event.get("state_key") != "":
        return "m.room.power_levels must be a state event with an empty state_key"
    if event_type == REDACTION:
        redacts = content.get("redacts")
        if type(redacts) is not str or not _EVENT_ID_RE.match(redacts):
            return "m.room.redaction content 'redacts' must be the ID of the event to redact"
    return None


# -- the rules ----------------------------------------------------------------------


def check(event: Mapping[str, Any], state: Optional[RoomState]) -> Result:
    """Apply the ``ps1`` rules A–I to ``event`` against ``state`` (None or empty only for create)."""
    problem = _envelope_problem(event)
    if problem:
        return _bad(problem)
    if event["type"] == CREATE:
        return _check_create(event, state)  # A
    create = state.create_event if state is not None else None
    if state is None or create is None:
        return Denied("the room has no create event, so only an m.room.create event can start it")
    if event["room_id"] != state.room_id:
        return Denied(f"the event names room {event['room_id']}, but this is room {state.room_id}")
    if create["event_id"] in event["auth_events"]:  # B (the shape that needs no lookup)
        return Denied("a ps1 event must not list the create event in auth_events; the room ID implies it")
    sender = event["sender"]
    creator = state.creator
    if not state.federate and (creator is None or _domain(sender) != _domain(creator)):  # C
        return Denied(
            f"this room does not federate, so only users on {_domain(creator or '')} may take part; "
            f"{sender} is on {_domain(sender)}"
        )
    if event["type"] == MEMBER:
        return _check_member(event, state)  # D
    if not state.is_joined(sender):  # E
        return Denied(f"{sender} is not joined to this room")
    sender_level = state.user_level(sender)
    is_state = "state_key" in event
    needed = state.power_levels().event_level(event["type"], is_state)
    if sender_level < needed:  # F
        return Denied(
            f"sending {event['type']} events in this room needs power level {needed}; "
            f"{sender} has {sender_level}"
        )
    state_key = event.get("state_key")
    if is_state and state_key.startswith("@") and state_key != sender:  # G
        return Denied(f"a state_key that is a user ID ({state_key}) may only be set by that user, not {sender}")
    if event["type"] == POWER_LEVELS:
        return _check_power_levels(event, state, sender_level)  # H
    return ALLOWED  # I (redactions included: they face only the general rules)


def _check_create(event: Mapping[str, Any], state: Optional[RoomState]) -> Result:
    """Rule A: the first event of a room."""
    if state is not None and len(state):
        return Denied("this room already exists; m.room.create can only be its first event")
    if "room_id" in event:
        return Denied("a ps1 create event must not carry room_id: the room ID is derived from its event ID")
    if event.get("prev_events"):
        return Denied("a create event must not have prev_events")
    if event.get("auth_events"):
        return Denied("a create event must not have auth_events")
    content = event["content"]
    version = content.get("room_version")
    if version is None:
        return Denied(f"the create event does not name its room version; this server implements only {ROOM_VERSION}")
    if version != ROOM_VERSION:
        return Denied(f"room version {version!r} is not supported; this server implements only {ROOM_VERSION}")
    if not is_valid_kind(content.get("kind")):
        return _bad(f"m.room.create content 'kind' must be one of: {', '.join(ROOM_KINDS)}")
    if "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(_is_user_id(user) for user in extra):
            return _bad("m.room.create 'additional_creators' must be a list of valid user IDs")
    if "m.federate" in content and type(content["m.federate"]) is not bool:
        return _bad("m.room.create 'm.federate' must be true or false")
    return ALLOWED


def _check_member(event: Mapping[str, Any], state: RoomState) -> Result:
    """Rule D: membership changes."""
    target = event.get("state_key")
    if target is None:
        return _bad("an m.room.member event needs a state_key naming the user it is about")
    if not _is_user_id(target):
        return _bad(f"the state_key of an m.room.member event must be a user ID, not {target!r}")
    membership = event["content"].get("membership")
    if type(membership) is not str:
        return _bad("an m.room.member event needs a string 'membership' in its content")
    if membership == JOIN:
        return _check_join(event, state, target)
    if membership == INVITE:
        return _check_invite(event, state, target)
    if membership == LEAVE:
        return _check_leave(event, state, target)
    if membership == BAN:
        return _check_ban(event, state, target)
    return Denied(f"membership {membership!r} is not allowed in ps1; use join, invite, leave or ban")


def _check_join(event: Mapping[str, Any], state: RoomState, target: str) -> Result:
    sender = event["sender"]
    if sender != target:
        return Denied(f"{sender} cannot join on behalf of {target}; only users can join themselves")
    current = state.membership(target)
    create_id = state.create_event["event_id"]  # type: ignore[index]
    if event["prev_events"] == [create_id] and target == state.creator and current is None:
        return ALLOWED
    if current == BAN:
        return Denied(f"{target} is banned from this room")
    rule = state.join_rule()
    if rule == INVITE_ONLY:
        if current in (INVITE, JOIN):
            return ALLOWED
        return Denied(f"this room is invite-only and {target} has not been invited")
    if rule == PUBLIC:
        return ALLOWED
    return Denied(f"the room's join rule {rule!r} does not let anyone join")


def _check_invite(event: Mapping[str, Any], state: RoomState, target: str) -> Result:
    sender = event["sender"]
    if not state.is_joined(sender):
        return Denied(f"{sender} must be joined to this room to invite anyone")
    current = state.membership(target)
    if current == JOIN:
        return Denied(f"{target} is already joined to this room")
    if current == BAN:
        return Denied(f"{target} is banned from this room and cannot be invited")
    level, needed = state.user_level(sender), state.power_levels().invite
    if level < needed:
        return Denied(f"inviting in this room needs power level {needed}; {sender} has {level}")
    return ALLOWED


def _check_leave(event: Mapping[str, Any], state: RoomState, target: str) -> Result:
    sender = event["sender"]
    current = state.membership(target)
    if sender == target:
        if current in (INVITE, JOIN):
            return ALLOWED
        if current == BAN:
            return Denied(f"{target} is banned and cannot lift the ban by leaving")
        status = "have already left" if current == LEAVE else "are not a member of this room"
        return Denied(f"{target} cannot leave: they {status}")
    pl = state.power_levels()
    level = state.user_level(sender)
    if current == BAN and state.is_joined(sender) and level < pl.ban:
        return Denied(f"unbanning in this room needs power level {pl.ban}; {sender} has {level}")
    return _check_removal(sender, target, state, pl.kick, ("remove", "removing"))


def _check_ban(event: Mapping[str, Any], state: RoomState, target: str) -> Result:
    return _check_removal(event["sender"], target, state, state.power_levels().ban, ("ban", "banning"))


def _check_removal(sender: str, target: str, state: RoomState, needed: int, verbs: Tuple[str, str]) -> Result:
    """Kick or ban: sender joined, sender level >= ``needed``, target level < sender level."""
    verb, gerund = verbs
    if not state.is_joined(sender):
        return Denied(f"{sender} must be joined to this room to {verb} anyone")
    level = state.user_level(sender)
    if level < needed:
        return Denied(f"{gerund} someone in this room needs power level {needed}; {sender} has {level}")
    target_level = state.user_level(target)
    if target_level >= level:
        return Denied(
            f"{sender} (power level {level}) cannot {verb} {target} (power level {target_level}); "
            "the target's level must be lower"
        )
    return ALLOWED


def _int_or_none(mapping: Mapping[str, Any], key: str) -> Optional[int]:
    value = mapping.get(key)
    return value if type(value) is int else None


def _check_change(what: str, old: Optional[int], new: Optional[int], sender: str, level: int) -> Optional[Denied]:
    if old == new:
        return None
    if old is not None and old > level:
        return Denied(f"{sender} cannot change {what} from {old}: that is above their own level {level}")
    if new is not None and new > level:
        return Denied(f"{sender} cannot set {what} to {new}: that is above their own level {level}")
    return None


def _check_power_levels(event: Mapping[str, Any], state: RoomState, level: int) -> Result:
    """Rule H: power-levels content and who may change which level."""
    new = event["content"]
    problem = validate_power_levels_content(new)
    if problem:
        return _bad(problem)
    old_event = state.get(POWER_LEVELS, "")
    if old_event is None:
        return ALLOWED
    old = old_event.get("content")
    old = old if isinstance(old, dict) else {}
    sender = event["sender"]
    for key in SCALAR_KEYS:
        denied = _check_change(f"'{key}'", _int_or_none(old, key), _int_or_none(new, key), sender, level)
        if denied:
            return denied
    old_events, new_events = _sub(old, "events"), _sub(new, "events")
    for event_type in old_events.keys() | new_events.keys():
        before, after = _int_or_none(old_events, event_type), _int_or_none(new_events, event_type)
        denied = _check_change(f"the level of {event_type} events", before, after, sender, level)
        if denied:
            return denied
    old_users, new_users = _sub(old, "users"), _sub(new, "users")
    for user in old_users.keys() | new_users.keys():
        before, after = _int_or_none(old_users, user), _int_or_none(new_users, user)
        if before == after:
            continue
        if user != sender and before is not None and before >= level:
            return Denied(
                f"{sender} (power level {level}) cannot change the level of {user} ({before}); "
                "only users below their own level can be changed"
            )
        if after is not None and after > level:
            return Denied(f"{sender} cannot give {user} power level {after}: that is above their own level {level}")
    return ALLOWED


def _sub(content: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = content.get(key)
    return value if isinstance(value, dict) else {}


# -- auth events (rule B) and redactions ----------------------------------------------


def _selectable(event: Mapping[str, Any]) -> Set[Tuple[str, str]]:
    """Every (type, state_key) the §3.1 selection rule could pick for ``event``."""
    sender = event["sender"]
    allowed = {(POWER_LEVELS, ""), (MEMBER, sender)}
    if event["type"] == MEMBER and type(event.get("state_key")) is str:
        allowed.add((MEMBER, event["state_key"]))
        if event["content"].get("membership") in (JOIN, INVITE):
            allowed.add((JOIN_RULES, ""))
    return allowed


def check_auth_events(event: Mapping[str, Any], auth_events: EventMap, create_event: Optional[Event]) -> Result:
    """Rule B: ``event``'s auth_events, looked up in ``auth_events`` (accepted events only, by ID).

    An ID missing from ``auth_events`` counts as unknown or rejected. ``create_event`` is the
    room's accepted create event, or ``None`` when it is missing or was rejected.
    """
    problem = _envelope_problem(event)
    if problem:
        return _bad(problem)
    if event["type"] == CREATE:
        return Denied("a create event must not have auth_events") if event.get("auth_events") else ALLOWED
    if create_event is None:
        return Denied("the room's create event is missing or was rejected, so nothing in the room can be authorised")
    create_id = create_event["event_id"]
    room_id = "!" + create_id[1:]
    if event["room_id"] != room_id:
        return Denied(f"the event names room {event['room_id']}, but its create event defines {room_id}")
    selectable = _selectable(event)
    seen: Set[Tuple[Any, Any]] = set()
    for event_id in event["auth_events"]:
        if event_id == create_id:
            return Denied("a ps1 event must not list the create event in auth_events; the room ID implies it")
        auth_event = auth_events.get(event_id)
        if auth_event is None:
            return Denied(f"auth event {event_id} is unknown or was rejected")
        if auth_event.get("room_id") != room_id:
            return Denied(f"auth event {event_id} belongs to another room")
        key = (auth_event.get("type"), auth_event.get("state_key"))
        if type(key[1]) is not str:
            return Denied(f"auth event {event_id} is not a state event")
        if key in seen:
            return Denied(f"auth_events lists two {key[0]} events for state_key {key[1]!r}")
        if key not in selectable:
            return Denied(
                f"auth event {event_id} ({key[0]}, {key[1]!r}) is not one that "
                "the auth-event selection rule picks for this event"
            )
        seen.add(key)
    return ALLOWED


def check_with_auth_events(event: Mapping[str, Any], auth_events: EventMap, create_event: Optional[Event]) -> Result:
    """Receive step 4: rule B, then rules A–I against the state made of the event's own auth events."""
    result = check_auth_events(event, auth_events, create_event)
    if not result.allowed:
        return result
    if event["type"] == CREATE:
        return check(event, None)
    listed = [auth_events[event_id] for event_id in event["auth_events"]]
    return check(event, RoomState.from_events([create_event, *listed]))


def check_redaction_applies(redaction_event: Event, original_event: Event, state: RoomState) -> bool:
    """Whether an accepted redaction may be applied to ``original_event`` (R11 #handling-redactions).

    True iff it redacts exactly that event in the same room and the redactor has at least the
    ``redact`` level in ``state`` or is on the same server as the original's sender. Servers
    restrict their own users further (e.g. only their own events below ``redact``).
    """
    content = redaction_event.get("content")
    if redaction_event.get("type") != REDACTION or not isinstance(content, dict):
        return False
    if content.get("redacts") != original_event.get("event_id"):
        return False
    original_room = original_event.get("room_id")
    if original_room is None and original_event.get("type") == CREATE:
        original_room = "!" + str(original_event.get("event_id", ""))[1:]
    if original_room != redaction_event.get("room_id"):
        return False
    redactor, author = redaction_event.get("sender"), original_event.get("sender")
    if type(redactor) is not str or type(author) is not str:
        return False
    if _domain(redactor) == _domain(author):
        return True
    return state.user_level(redactor) >= state.power_levels().redact
