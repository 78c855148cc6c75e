"""Table-driven tests of the ps1 auth rules (federation.md §3.2 A–I): an allow and a deny per clause."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import BadEvent, Forbidden
from rooms.auth import (
    ALLOWED, BAD_EVENT, FORBIDDEN, Allowed, Denied, check, check_auth_events,
    check_redaction_applies, check_with_auth_events,
)
from rooms.kinds import CREATE, JOIN_RULES, MEMBER, MESSAGE, NAME, POWER_LEVELS, REDACTION, TOPIC
from rooms.state import RoomState
from tests.room_helpers import ALICE, BOB, CAROL, DAVE, ERIN, MISSING, Room, fake_event_id, make_event

MSG = {"msgtype": "m.text", "body": "hello"}
Case = Tuple[str, Callable[[], Tuple[Dict[str, Any], Any]], str]


def _create(**overrides: Any) -> Dict[str, Any]:
    event = make_event(CREATE, ALICE, {"room_version": "ps1", "kind": "chat"}, state_key="")
    for key, value in overrides.items():
        if value is MISSING:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def _pl_room(**pl: Any) -> Room:
    """BOB (50), CAROL (0), DAVE (50) and ERIN (10) joined; BOB may send PL events."""
    return Room(
        levels={BOB: 50, DAVE: 50, ERIN: 10},
        pl={"events": {NAME: 50, TOPIC: 50, POWER_LEVELS: 50}, **pl},
        members={BOB: "join", CAROL: "join", DAVE: "join", ERIN: "join"},
    )


def _pl(room: Room, sender: str = BOB, **changes: Any) -> Tuple[Dict[str, Any], RoomState]:
    content = dict(room.state.get(POWER_LEVELS, "")["content"])
    for key, value in changes.items():
        if value is MISSING:
            content.pop(key, None)
        else:
            content[key] = value
    return room.ev(POWER_LEVELS, sender, content, "")


def _users(room: Room, **entries: Any) -> Dict[str, Any]:
    users = dict(room.state.get(POWER_LEVELS, "")["content"]["users"])
    for name, level in entries.items():
        user = {"bob": BOB, "carol": CAROL, "dave": DAVE, "alice": ALICE, "erin": ERIN}[name]
        if level is MISSING:
            users.pop(user, None)
        else:
            users[user] = level
    return users


def _banned_creator() -> Tuple[Dict[str, Any], RoomState]:
    room = Room(levels={BOB: 100}, members={BOB: "join"})
    room.force(MEMBER, BOB, {"membership": "ban"}, ALICE)
    return room.member(ALICE, ALICE, "join", prev_events=[room.create["event_id"]])


def _create_listed() -> Tuple[Dict[str, Any], RoomState]:
    room = Room()
    event, state = room.ev(MESSAGE, ALICE, MSG)
    event["auth_events"].append(room.create["event_id"])
    return event, state


def _first_join_with_extra_prev() -> Tuple[Dict[str, Any], RoomState]:
    room = Room(bare=True)
    return room.member(ALICE, ALICE, "join", prev_events=[room.create["event_id"], fake_event_id()])


def _pl_room_without(key: str) -> Room:
    room = _pl_room()
    content = dict(room.state.get(POWER_LEVELS, "")["content"])
    del content[key]
    room.force(POWER_LEVELS, ALICE, content, "")
    return room


def _nofed(user: str) -> Tuple[Dict[str, Any], RoomState]:
    return Room(public=True, create_extra={"m.federate": False}).member(user, user, "join")


ALLOW, DENY, BAD = "allow", FORBIDDEN, BAD_EVENT

CASES: List[Case] = [
    # A. create
    ("A create with no state", lambda: (_create(), None), ALLOW),
    ("A create with empty state", lambda: (_create(), RoomState()), ALLOW),
    ("A create with valid additional_creators", lambda: (_create(content={"room_version": "ps1", "kind": "dm", "additional_creators": [BOB]}), None), ALLOW),
    ("A create with prev_events", lambda: (_create(prev_events=[fake_event_id()]), None), DENY),
    ("A create with auth_events", lambda: (_create(auth_events=[fake_event_id()]), None), DENY),
    ("A create with room_id", lambda: (_create(room_id="!" + fake_event_id()[1:]), None), DENY),
    ("A create with unknown room_version", lambda: (_create(content={"room_version": "11", "kind": "chat"}), None), DENY),
    ("A create without room_version", lambda: (_create(content={"kind": "chat"}), None), DENY),
    ("A create in an existing room", lambda: (_create(), Room().state), DENY),
    ("A create with unknown kind", lambda: (_create(content={"room_version": "ps1", "kind": "party"}), None), BAD),
    ("A create with bad additional_creators", lambda: (_create(content={"room_version": "ps1", "kind": "chat", "additional_creators": ["bob"]}), None), BAD),
    ("A create without state_key", lambda: (_create(state_key=MISSING), None), BAD),
    ("A non-create with no state", lambda: (Room().build(MESSAGE, ALICE, MSG), None), DENY),
    ("A non-create with empty state", lambda: (Room().build(MESSAGE, ALICE, MSG), RoomState()), DENY),
    # B. the lookup-free part of B inside check()
    ("B create event listed in auth_events", lambda: _create_listed(), DENY),
    ("B event from another room", lambda: Room().ev(MESSAGE, ALICE, MSG, room_id="!" + fake_event_id()[1:]), DENY),
    ("B more than 10 auth_events", lambda: Room().ev(MESSAGE, ALICE, MSG, auth_events=[fake_event_id() for _ in range(11)]), BAD),
    ("B the same auth event twice", lambda: Room().ev(MESSAGE, ALICE, MSG, auth_events=[fake_event_id("x")] * 2), BAD),
    # C. m.federate = false
    ("C no-federate room, same-server user joins", lambda: _nofed(BOB), ALLOW),
    ("C no-federate room, other-server user joins", lambda: _nofed(CAROL), DENY),
    ("C m.federate not a boolean", lambda: (_create(content={"room_version": "ps1", "kind": "chat", "m.federate": "no"}), None), BAD),
    # D. join
    ("D join: creator's first join after create", lambda: Room(bare=True).member(ALICE, ALICE, "join"), ALLOW),
    ("D join: first join with extra prev events", _first_join_with_extra_prev, DENY),
    ("D join: non-creator right after create", lambda: Room(bare=True).member(BOB, BOB, "join"), DENY),
    ("D join: banned creator pointing at create", _banned_creator, DENY),
    ("D join: public room", lambda: Room(public=True).member(BOB, BOB, "join"), ALLOW),
    ("D join: invite-only, invited", lambda: Room(members={BOB: "invite"}).member(BOB, BOB, "join"), ALLOW),
    ("D join: invite-only, already joined", lambda: Room(members={BOB: "join"}).member(BOB, BOB, "join"), ALLOW),
    ("D join: invite-only, not invited", lambda: Room().member(BOB, BOB, "join"), DENY),
    ("D join: invite-only, after leaving", lambda: Room(members={BOB: "leave"}).member(BOB, BOB, "join"), DENY),
    ("D join: public room while banned", lambda: Room(public=True, members={BOB: "ban"}).member(BOB, BOB, "join"), DENY),
    ("D join: on someone else's behalf", lambda: Room(public=True).member(ALICE, BOB, "join"), DENY),
    ("D join: unknown join rule", lambda: _with_join_rule("knock").member(BOB, BOB, "join"), DENY),
    # D. invite
    ("D invite: joined sender with enough PL", lambda: Room().member(ALICE, BOB, "invite"), ALLOW),
    ("D invite: re-invite an invited user", lambda: Room(members={BOB: "invite"}).member(ALICE, BOB, "invite"), ALLOW),
    ("D invite: sender not joined", lambda: Room(members={BOB: "invite"}).member(BOB, CAROL, "invite"), DENY),
    ("D invite: target already joined", lambda: Room(members={BOB: "join"}).member(ALICE, BOB, "invite"), DENY),
    ("D invite: target banned", lambda: Room(members={BOB: "ban"}).member(ALICE, BOB, "invite"), DENY),
    ("D invite: sender PL below invite", lambda: Room(pl={"invite": 50}, members={BOB: "join"}).member(BOB, CAROL, "invite"), DENY),
    ("D invite: sender PL at invite", lambda: Room(pl={"invite": 50}, levels={BOB: 50}, members={BOB: "join"}).member(BOB, CAROL, "invite"), ALLOW),
    # D. leave (self)
    ("D leave: self from invite (reject invite)", lambda: Room(members={BOB: "invite"}).member(BOB, BOB, "leave"), ALLOW),
    ("D leave: self from join", lambda: Room(members={BOB: "join"}).member(BOB, BOB, "leave"), ALLOW),
    ("D leave: self from leave", lambda: Room(members={BOB: "leave"}).member(BOB, BOB, "leave"), DENY),
    ("D leave: self, never a member", lambda: Room().member(BOB, BOB, "leave"), DENY),
    ("D leave: self while banned", lambda: Room(members={BOB: "ban"}).member(BOB, BOB, "leave"), DENY),
    # D. leave (kick)
    ("D kick: PL >= kick and target lower", lambda: Room(members={BOB: "join"}).member(ALICE, BOB, "leave"), ALLOW),
    ("D kick: target at equal level", lambda: Room(levels={BOB: 50, CAROL: 50}, members={BOB: "join", CAROL: "join"}).member(BOB, CAROL, "leave"), DENY),
    ("D kick: target at higher level", lambda: Room(levels={BOB: 50}, members={BOB: "join"}).member(BOB, ALICE, "leave"), DENY),
    ("D kick: sender PL below kick", lambda: Room(levels={BOB: 49}, members={BOB: "join", CAROL: "join"}).member(BOB, CAROL, "leave"), DENY),
    ("D kick: sender not joined", lambda: Room(levels={BOB: 90}, members={BOB: "leave", CAROL: "join"}).member(BOB, CAROL, "leave"), DENY),
    ("D kick: an invited user (revoke invite)", lambda: Room(members={BOB: "invite"}).member(ALICE, BOB, "leave"), ALLOW),
    # D. leave (unban)
    ("D unban: PL >= ban", lambda: Room(members={BOB: "ban"}).member(ALICE, BOB, "leave"), ALLOW),
    ("D unban: PL >= kick but below ban", lambda: Room(pl={"kick": 25, "ban": 75}, levels={DAVE: 50}, members={DAVE: "join", BOB: "ban"}).member(DAVE, BOB, "leave"), DENY),
    ("D kick: not banned, same levels as the unban row", lambda: Room(pl={"kick": 25, "ban": 75}, levels={DAVE: 50}, members={DAVE: "join", BOB: "join"}).member(DAVE, BOB, "leave"), ALLOW),
    ("D unban: banned user at equal level", lambda: Room(levels={DAVE: 50, BOB: 50}, members={DAVE: "join", BOB: "ban"}).member(DAVE, BOB, "leave"), DENY),
    # D. ban
    ("D ban: PL >= ban and target lower", lambda: Room(members={BOB: "join"}).member(ALICE, BOB, "ban"), ALLOW),
    ("D ban: a user who was never a member", lambda: Room().member(ALICE, CAROL, "ban"), ALLOW),
    ("D ban: target at equal level", lambda: Room(levels={BOB: 50, CAROL: 50}, members={BOB: "join", CAROL: "join"}).member(BOB, CAROL, "ban"), DENY),
    ("D ban: sender PL below ban", lambda: Room(levels={BOB: 49}, members={BOB: "join", CAROL: "join"}).member(BOB, CAROL, "ban"), DENY),
    ("D ban: sender not joined", lambda: Room(members={BOB: "invite"}).member(BOB, CAROL, "ban"), DENY),
    ("D ban: self", lambda: Room(members={BOB: "join"}).member(ALICE, ALICE, "ban"), DENY),
    # D. malformed or unknown membership
    ("D other membership: unknown value", lambda: Room(public=True).member(BOB, BOB, "knock"), DENY),
    ("D other membership: missing", lambda: Room(public=True).ev(MEMBER, BOB, {"pseudonym": "b"}, BOB), BAD),
    ("D other membership: not a string", lambda: Room(public=True).member(BOB, BOB, 1), BAD),
    ("D other membership: missing state_key", lambda: Room(public=True).ev(MEMBER, BOB, {"membership": "join"}), BAD),
    ("D other membership: state_key not a user ID", lambda: Room(public=True).member(BOB, "bob", "join"), BAD),
    # E. sender joined
    ("E message from a joined user", lambda: Room(members={BOB: "join"}).ev(MESSAGE, BOB, MSG), ALLOW),
    ("E message from an invited user", lambda: Room(members={BOB: "invite"}).ev(MESSAGE, BOB, MSG), DENY),
    ("E message from a stranger", lambda: Room().ev(MESSAGE, CAROL, MSG), DENY),
    ("E state event from a user who left", lambda: Room(levels={BOB: 100}, members={BOB: "leave"}).ev(TOPIC, BOB, {"topic": "t"}, ""), DENY),
    # F. event-type levels
    ("F events_default met", lambda: Room(pl={"events_default": 10}, levels={BOB: 10}, members={BOB: "join"}).ev(MESSAGE, BOB, MSG), ALLOW),
    ("F events_default not met", lambda: Room(pl={"events_default": 10}, members={BOB: "join"}).ev(MESSAGE, BOB, MSG), DENY),
    ("F state_default met", lambda: Room(levels={BOB: 50}, members={BOB: "join"}).ev("org.example.pinned", BOB, {}, ""), ALLOW),
    ("F state_default not met", lambda: Room(levels={BOB: 49}, members={BOB: "join"}).ev("org.example.pinned", BOB, {}, ""), DENY),
    ("F events override raises a message type", lambda: Room(pl={"events": {MESSAGE: 20}}, levels={BOB: 10}, members={BOB: "join"}).ev(MESSAGE, BOB, MSG), DENY),
    ("F events override lowers a state type", lambda: Room(pl={"events": {NAME: 0}}, members={BOB: "join"}).ev(NAME, BOB, {"name": "n"}, ""), ALLOW),
    ("F name at its default 50, sender 0", lambda: Room(members={BOB: "join"}).ev(NAME, BOB, {"name": "n"}, ""), DENY),
    ("F no PL event: creator has 100", lambda: Room(with_power_levels=False).ev(TOPIC, ALICE, {"topic": "t"}, ""), ALLOW),
    ("F no PL event: others have 0", lambda: Room(with_power_levels=False, public=True, members={BOB: "join"}).ev(TOPIC, BOB, {"topic": "t"}, ""), DENY),
    ("F redaction at events_default", lambda: Room(members={BOB: "join"}).ev(REDACTION, BOB, {"redacts": fake_event_id()}), ALLOW),
    ("F redaction type raised above sender", lambda: Room(pl={"events": {REDACTION: 60}}, levels={BOB: 50}, members={BOB: "join"}).ev(REDACTION, BOB, {"redacts": fake_event_id()}), DENY),
    ("F redaction without redacts", lambda: Room(members={BOB: "join"}).ev(REDACTION, BOB, {}), BAD),
    # G. user-owned state keys
    ("G state_key equal to the sender", lambda: Room(pl={"state_default": 0}, members={BOB: "join"}).ev("org.example.profile", BOB, {}, BOB), ALLOW),
    ("G state_key naming another user", lambda: Room().ev("org.example.profile", ALICE, {}, BOB), DENY),
    ("G state_key not starting with @", lambda: Room().ev("org.example.profile", ALICE, {}, "bob"), ALLOW),
    # H. power levels: validation
    ("H first PL event", lambda: Room(with_power_levels=False).ev(POWER_LEVELS, ALICE, {"users": {ALICE: 100}, "ban": 100}, ""), ALLOW),
    ("H first PL event with a bool level", lambda: Room(with_power_levels=False).ev(POWER_LEVELS, ALICE, {"ban": True}, ""), BAD),
    ("H scalar is a bool", lambda: _pl(_pl_room(), ALICE, kick=True), BAD),
    ("H scalar is a string", lambda: _pl(_pl_room(), ALICE, kick="50"), BAD),
    ("H scalar is a float", lambda: _pl(_pl_room(), ALICE, kick=50.0), BAD),
    ("H scalar out of range", lambda: _pl(_pl_room(), ALICE, kick=2**53), BAD),
    ("H events value is a bool", lambda: _pl(_pl_room(), ALICE, events={NAME: False}), BAD),
    ("H users value is a bool", lambda: _pl(_pl_room(), ALICE, users={ALICE: True}), BAD),
    ("H users value is null", lambda: _pl(_pl_room(), ALICE, users={ALICE: 100, BOB: None}), BAD),
    ("H users key not a user ID", lambda: _pl(_pl_room(), ALICE, users={ALICE: 100, "bob": 1}), BAD),
    ("H users not an object", lambda: _pl(_pl_room(), ALICE, users=[ALICE]), BAD),
    ("H PL with a non-empty state_key", lambda: Room().ev(POWER_LEVELS, ALICE, {}, "x"), BAD),
    # H. power levels: who may change what
    ("H scalar lowered within own level", lambda: _pl(_pl_room(), kick=40), ALLOW),
    ("H scalar raised to own level", lambda: _pl(_pl_room(), kick=50), ALLOW),
    ("H scalar raised above own level", lambda: _pl(_pl_room(), kick=60), DENY),
    ("H scalar changed above own level", lambda: _pl(_pl_room(), users_default=51), DENY),
    ("H scalar added within own level", lambda: _pl(_pl_room_without("invite"), invite=10), ALLOW),
    ("H scalar added above own level", lambda: _pl(_pl_room_without("invite"), invite=60), DENY),
    ("H scalar whose old value is above own level", lambda: _pl(_pl_room(ban=75), ban=40), DENY),
    ("H scalar removed whose old value is above own", lambda: _pl(_pl_room(ban=75), ban=MISSING), DENY),
    ("H events entry set within own level", lambda: _pl(_pl_room(), events={NAME: 50, TOPIC: 40, POWER_LEVELS: 50}), ALLOW),
    ("H events entry raised above own level", lambda: _pl(_pl_room(), events={NAME: 50, TOPIC: 60, POWER_LEVELS: 50}), DENY),
    ("H events entry whose old value is above own", lambda: _pl(_pl_room(events={POWER_LEVELS: 50, "x.y": 75}), events={POWER_LEVELS: 50, "x.y": 10}), DENY),
    ("H events entry removed whose old value is above own", lambda: _pl(_pl_room(events={POWER_LEVELS: 50, "x.y": 75}), events={POWER_LEVELS: 50}), DENY),
    ("H user below sender raised to sender's level", lambda: (lambda r: _pl(r, users=_users(r, carol=50)))(_pl_room()), ALLOW),
    ("H user raised above sender's level", lambda: (lambda r: _pl(r, users=_users(r, carol=60)))(_pl_room()), DENY),
    ("H user at equal level changed", lambda: (lambda r: _pl(r, users=_users(r, dave=0)))(_pl_room()), DENY),
    ("H user at equal level removed", lambda: (lambda r: _pl(r, users=_users(r, dave=MISSING)))(_pl_room()), DENY),
    ("H higher user demoted", lambda: (lambda r: _pl(r, users=_users(r, alice=0)))(_pl_room()), DENY),
    ("H lower user removed", lambda: (lambda r: _pl(r, users=_users(r, erin=MISSING)))(_pl_room(users_default=0)), ALLOW),
    ("H own entry lowered", lambda: (lambda r: _pl(r, users=_users(r, bob=10)))(_pl_room()), ALLOW),
    ("H own entry raised above own level", lambda: (lambda r: _pl(r, users=_users(r, bob=51)))(_pl_room()), DENY),
    ("H unchanged content from a PL-50 sender", lambda: _pl(_pl_room()), ALLOW),
    ("H PL event below the PL event level (F first)", lambda: _pl(Room(levels={BOB: 50}, members={BOB: "join"})), DENY),
    # I. everything else
    ("I unknown message type from a member", lambda: Room(members={BOB: "join"}).ev("org.example.reaction", BOB, {"key": "+1"}), ALLOW),
    ("I topic from a moderator", lambda: Room(levels={BOB: 50}, members={BOB: "join"}).ev(TOPIC, BOB, {"topic": "t"}, ""), ALLOW),
    # envelope
    ("envelope: sender not a user ID", lambda: Room().ev(MESSAGE, "alice", MSG), BAD),
    ("envelope: content not an object", lambda: Room().ev(MESSAGE, ALICE, MSG, content=[1]), BAD),
    ("envelope: no prev_events", lambda: Room().ev(MESSAGE, ALICE, MSG, prev_events=[]), BAD),
    ("envelope: prev_events not IDs", lambda: Room().ev(MESSAGE, ALICE, MSG, prev_events=["$short"]), BAD),
    ("envelope: no room_id", lambda: Room().ev(MESSAGE, ALICE, MSG, room_id=MISSING), BAD),
    ("envelope: type too long", lambda: Room().ev("x" * 256, ALICE, MSG), BAD),
]


def _with_join_rule(rule: str) -> Room:
    room = Room()
    room.force(JOIN_RULES, ALICE, {"join_rule": rule}, "")
    return room


@pytest.mark.parametrize("build, expected", [pytest.param(f, e, id=n) for n, f, e in CASES])
def test_rule(build: Callable[[], Tuple[Dict[str, Any], Any]], expected: str) -> None:
    event, state = build()
    result = check(event, state)
    if expected == ALLOW:
        assert result is ALLOWED, result
    else:
        assert isinstance(result, Denied), f"expected {expected}, got Allowed"
        assert result.errcode == expected, result
        assert len(result.reason) > 20, result  # a sentence, not a code


def test_every_clause_has_allow_and_deny() -> None:
    """Each clause A–I, and each membership, has at least one allow and one deny row."""
    seen: Dict[str, set] = {}
    for name, _, expected in CASES:
        tag = name.split(":")[0] if ":" in name else name.split(" ")[0]
        seen.setdefault(tag, set()).add("allow" if expected == ALLOW else "deny")
    for clause in ["A", "B", "C", "E", "F", "G", "H", "I"]:
        assert clause in seen, clause
    for tag, outcomes in seen.items():
        if tag in ("B", "envelope", "D other membership"):
            continue
        if tag == "I":
            assert outcomes == {"allow"}
            continue
        assert outcomes == {"allow", "deny"}, (tag, outcomes)


def test_deny_reasons_name_the_problem() -> None:
    """Reasons are specific: they name users, levels and the rule that failed."""
    event, state = Room(levels={BOB: 49}, members={BOB: "join", CAROL: "join"}).member(BOB, CAROL, "ban")
    reason = check(event, state).reason  # type: ignore[union-attr]
    assert BOB in reason and "50" in reason and "49" in reason
    event, state = Room().member(BOB, BOB, "join")
    assert "invite-only" in check(event, state).reason  # type: ignore[union-attr]
    event, state = _pl(_pl_room(), kick=True)
    assert "boolean" in check(event, state).reason  # type: ignore[union-attr]


def test_results_are_values() -> None:
    """``allowed`` tells them apart; Denied converts to the protocol error."""
    assert ALLOWED.allowed and isinstance(ALLOWED, Allowed) and ALLOWED == Allowed()
    denied = Denied("no")
    assert not denied.allowed and denied.errcode == FORBIDDEN
    assert isinstance(denied.to_error(), Forbidden) and denied.to_error().reason == "no"
    assert isinstance(Denied("bad", BAD_EVENT).to_error(), BadEvent)
    with pytest.raises(AttributeError):
        denied.reason = "yes"  # type: ignore[misc]


# -- B: auth events looked up ---------------------------------------------------------


def _auth_map(room: Room) -> Dict[str, Dict[str, Any]]:
    return {event["event_id"]: event for _, event in room.state.items()}


def _b(room: Room, event: Dict[str, Any], auth: Any = None, create: Any = MISSING) -> Any:
    return check_auth_events(event, _auth_map(room) if auth is None else auth, room.create if create is MISSING else create)


def test_b_selected_auth_events_allowed() -> None:
    room = Room(members={BOB: "invite"})
    assert _b(room, room.build(MEMBER, BOB, {"membership": "join"}, BOB)) is ALLOWED
    assert _b(room, room.build(MESSAGE, ALICE, MSG)) is ALLOWED
    assert check_auth_events(room.create, {}, None) is ALLOWED


def test_b_duplicate_type_and_state_key_denied() -> None:
    room = Room()
    old_pl = room.state.get(POWER_LEVELS, "")
    new_pl = room.force(POWER_LEVELS, ALICE, dict(old_pl["content"]), "")
    auth = {**_auth_map(room), old_pl["event_id"]: old_pl}
    event = room.build(MESSAGE, ALICE, MSG, auth_events=[old_pl["event_id"], new_pl["event_id"]])
    assert "two m.room.power_levels" in _b(room, event, auth).reason


def test_b_unselectable_types_denied() -> None:
    room = Room(members={BOB: "join", CAROL: "join"})
    name = room.state.get(NAME, "") or room.force(NAME, ALICE, {"name": "n"}, "")
    rules = room.state.get(JOIN_RULES, "")
    carol = room.state.get(MEMBER, CAROL)
    for extra in (name, rules, carol):
        event = room.build(MESSAGE, BOB, MSG)
        event["auth_events"].append(extra["event_id"])
        assert "selection rule" in _b(room, event).reason
    # join_rules is selectable for a join or invite, not for a leave
    event = room.build(MEMBER, BOB, {"membership": "leave"}, BOB)
    event["auth_events"].append(rules["event_id"])
    assert "selection rule" in _b(room, event).reason


def test_b_auth_event_from_another_room_denied() -> None:
    room, other = Room(), Room()
    foreign = other.state.get(POWER_LEVELS, "")
    event = room.build(MESSAGE, ALICE, MSG, auth_events=[foreign["event_id"], room.state.get(MEMBER, ALICE)["event_id"]])
    assert "another room" in _b(room, event, {**_auth_map(room), **_auth_map(other)}).reason


def test_b_create_event_listed_denied() -> None:
    room = Room()
    event = room.build(MESSAGE, ALICE, MSG)
    event["auth_events"].append(room.create["event_id"])
    assert "create event" in _b(room, event).reason
    assert "create event" in check(event, room.state).reason  # type: ignore[union-attr]


def test_b_rejected_or_missing_auth_event_denied() -> None:
    room = Room()
    event = room.build(MESSAGE, ALICE, MSG)
    rejected = dict(_auth_map(room))
    del rejected[event["auth_events"][0]]
    assert "unknown or was rejected" in _b(room, event, rejected).reason


def test_b_missing_create_event_denied() -> None:
    room = Room()
    assert "create event is missing" in _b(room, room.build(MESSAGE, ALICE, MSG), create=None).reason
    assert "must not have auth_events" in check_auth_events(_create(auth_events=[fake_event_id()]), {}, None).reason


def test_b_event_in_a_room_other_than_the_create_events() -> None:
    room = Room()
    event = room.build(MESSAGE, ALICE, MSG, room_id="!" + fake_event_id()[1:])
    assert isinstance(_b(room, event), Denied)


def test_b_auth_event_that_is_not_state_denied() -> None:
    room = Room()
    message = room.force(MESSAGE, ALICE, MSG)
    event = room.build(MESSAGE, ALICE, MSG)
    event["auth_events"].append(message["event_id"])
    assert "not a state event" in _b(room, event, {**_auth_map(room), message["event_id"]: message}).reason


def test_check_with_auth_events() -> None:
    room = Room(members={BOB: "join"})
    event = room.build(MESSAGE, BOB, MSG)
    assert check_with_auth_events(event, _auth_map(room), room.create) is ALLOWED
    # Listing only the PL event leaves Bob's membership out of the auth state: E denies.
    event["auth_events"] = [room.state.get(POWER_LEVELS, "")["event_id"]]
    assert "not joined" in check_with_auth_events(event, _auth_map(room), room.create).reason
    assert check_with_auth_events(room.create, {}, None) is ALLOWED
    assert isinstance(check_with_auth_events(event, _auth_map(room), None), Denied)


# -- redactions: whether to apply ------------------------------------------------------


def _redaction_case(redactor: str, level: int = 0) -> Tuple[Dict[str, Any], Dict[str, Any], RoomState]:
    room = Room(levels={redactor: level}, members={redactor: "join"})
    original = room.send(MESSAGE, ALICE, MSG)
    redaction = room.send(REDACTION, redactor, {"redacts": original["event_id"]})
    return redaction, original, room.state


def test_redaction_applies_same_server() -> None:
    assert check_redaction_applies(*_redaction_case(BOB, 0)) is True


def test_redaction_applies_with_redact_level() -> None:
    assert check_redaction_applies(*_redaction_case(CAROL, 50)) is True


def test_redaction_refused_other_server_low_level() -> None:
    assert check_redaction_applies(*_redaction_case(CAROL, 49)) is False


def test_redaction_refused_for_another_event_or_room() -> None:
    redaction, original, state = _redaction_case(BOB)
    assert check_redaction_applies(redaction, {**original, "event_id": fake_event_id()}, state) is False
    assert check_redaction_applies(redaction, {**original, "room_id": "!" + fake_event_id()[1:]}, state) is False
    assert check_redaction_applies({**redaction, "type": MESSAGE}, original, state) is False


# -- auth-event selection ---------------------------------------------------------------


def _ids(room: Room, *slots: Tuple[str, str]) -> List[str]:
    return [room.state.get(t, k)["event_id"] for t, k in slots]


def test_selection_for_a_message() -> None:
    room = Room(members={BOB: "join"})
    assert room.state.auth_event_ids_for(MESSAGE, None, BOB, MSG) == _ids(room, (POWER_LEVELS, ""), (MEMBER, BOB))
    assert room.create["event_id"] not in room.state.auth_event_ids_for(MESSAGE, None, BOB, MSG)


def test_selection_for_member_events() -> None:
    room = Room(members={BOB: "join", CAROL: "invite"})
    pl, rules = (POWER_LEVELS, ""), (JOIN_RULES, "")
    state = room.state
    assert state.auth_event_ids_for(MEMBER, CAROL, CAROL, {"membership": "join"}) == _ids(room, pl, (MEMBER, CAROL), rules)
    assert state.auth_event_ids_for(MEMBER, DAVE, BOB, {"membership": "invite"}) == _ids(room, pl, (MEMBER, BOB), rules)
    assert state.auth_event_ids_for(MEMBER, CAROL, BOB, {"membership": "invite"}) == _ids(room, pl, (MEMBER, BOB), (MEMBER, CAROL), rules)
    assert state.auth_event_ids_for(MEMBER, BOB, ALICE, {"membership": "ban"}) == _ids(room, pl, (MEMBER, ALICE), (MEMBER, BOB))
    assert state.auth_event_ids_for(MEMBER, BOB, BOB, {"membership": "leave"}) == _ids(room, pl, (MEMBER, BOB))


def test_selection_without_power_levels_or_membership() -> None:
    room = Room(bare=True)
    assert room.state.auth_event_ids_for(MEMBER, ALICE, ALICE, {"membership": "join"}) == []
    room = Room(with_power_levels=False)
    assert room.state.auth_event_ids_for(NAME, "", ALICE, {"name": "n"}) == _ids(room, (MEMBER, ALICE))


# -- properties -----------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_field_values = st.sampled_from([MISSING, None, 1, True, "", "x", ALICE, [], {}]) | _json


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(["type", "sender", "state_key", "content", "prev_events", "auth_events", "room_id"]),
    value=_field_values,
    kind=st.sampled_from([MESSAGE, MEMBER, POWER_LEVELS, CREATE, REDACTION, NAME]),
)
def test_check_is_total(field: str, value: Any, kind: str) -> None:
    """Whatever one field holds, check() answers Allowed or Denied and never raises."""
    room = Room(members={BOB: "join"})
    content = {"membership": "join"} if kind == MEMBER else {"redacts": fake_event_id()} if kind == REDACTION else {}
    event = room.build(kind, BOB, content, BOB if kind == MEMBER else "" if kind != MESSAGE else MISSING)
    if value is MISSING:
        event.pop(field, None)
    else:
        event[field] = value
    for state in (room.state, None, RoomState()):
        assert isinstance(check(event, state), (Allowed, Denied))
    assert isinstance(check_auth_events(event, _auth_map(room), room.create), (Allowed, Denied))


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["ban", "kick", "redact", "invite", "users_default", "events_default", "state_default"]),
       value=st.booleans() | st.floats(allow_nan=True) | st.text(max_size=3) | st.none())
def test_non_int_power_levels_always_rejected(key: str, value: Any) -> None:
    """No power level that is not a plain int (bool included) ever passes H."""
    event, state = _pl(_pl_room(), ALICE, **{key: value})
    result = check(event, state)
    assert isinstance(result, Denied) and result.errcode == BAD_EVENT


@settings(max_examples=200, deadline=None)
@given(sender_level=st.integers(0, 100), target_level=st.integers(0, 100), kick=st.integers(0, 100))
def test_kick_matches_the_rule(sender_level: int, target_level: int, kick: int) -> None:
    """A kick is allowed iff sender PL >= kick and target PL < sender PL."""
    room = Room(pl={"kick": kick}, levels={BOB: sender_level, CAROL: target_level}, members={BOB: "join", CAROL: "join"})
    allowed = check(*room.member(BOB, CAROL, "leave")).allowed
    assert allowed == (sender_level >= kick and target_level < sender_level)
