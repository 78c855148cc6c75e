"""RoomState updates and accessors, power-level defaults, kinds, and the room builder."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import BadField
from rooms.auth import check
from rooms.builder import INVITE_LEVEL_BY_KIND, default_power_levels, initial_state
from rooms.kinds import (
    CREATE, JOIN_RULES, MEMBER, MESSAGE, NAME, POWER_LEVELS, ROOM_KINDS, TOPIC, RoomKind, is_valid_kind,
)
from rooms.power_levels import PowerLevels, validate_power_levels_content
from rooms.state import RoomState
from tests.room_helpers import ALICE, BOB, CAROL, DAVE, ERIN, Room, fake_event_id, make_event

USERS = [ALICE, BOB, CAROL, DAVE, ERIN]


def _member(user: str, membership: str, sender: Optional[str] = None) -> Dict[str, Any]:
    return make_event(MEMBER, sender or user, {"membership": membership}, state_key=user)


# -- accessors --------------------------------------------------------------------------


def test_empty_state() -> None:
    state = RoomState()
    assert len(state) == 0 and state.create_event is None and state.room_id is None
    assert state.creator is None and state.kind is None and state.name is None and state.topic is None
    assert state.joined_members() == frozenset() and state.join_rule() == "invite"
    assert not state.power_levels().exists and state.membership(ALICE) is None


def test_create_defines_room_id_creator_and_kind() -> None:
    create = make_event(CREATE, ALICE, {"room_version": "ps1", "kind": "forum", "additional_creators": [BOB]}, state_key="")
    state = RoomState.from_events([create])
    assert state.create_event is create
    assert state.room_id == "!" + create["event_id"][1:]
    assert state.creator == ALICE and state.creators == frozenset({ALICE, BOB})
    assert state.kind == "forum" and state.federate is True
    assert state.user_level(ALICE) == 100 and state.user_level(BOB) == 100 and state.user_level(CAROL) == 0


def test_accessors_after_builder_room() -> None:
    room = Room(kind="blog", public=True)
    room.send(NAME, ALICE, {"name": "Recovery diary"}, "")
    room.send(TOPIC, ALICE, {"topic": "one day at a time"}, "")
    state = room.state
    assert state.kind == "blog" and state.name == "Recovery diary" and state.topic == "one day at a time"
    assert state.join_rule() == "public" and state.membership(ALICE) == "join"
    assert state.joined_members() == {ALICE} and state.joined_count() == 1 and state.is_joined(ALICE)
    assert state.get(NAME, "")["content"]["name"] == "Recovery diary"
    assert state.get(NAME) is state.get(NAME, "") and state.get(NAME, "x") is None
    assert (MEMBER, ALICE) in state and len(state) == 6
    assert set(state.event_ids()) == {event["event_id"] for _, event in state.items()}


def test_later_event_replaces_its_slot() -> None:
    room = Room()
    first = room.send(TOPIC, ALICE, {"topic": "a"}, "")
    second = room.send(TOPIC, ALICE, {"topic": "b"}, "")
    assert room.state.get(TOPIC, "") is second is not first and room.state.topic == "b"


def test_non_state_events_are_ignored() -> None:
    room = Room()
    before = len(room.state)
    assert room.state.apply(room.build(MESSAGE, ALICE, {"body": "hi"})) is False
    assert len(room.state) == before


def test_power_levels_cache_follows_updates() -> None:
    room = Room(members={BOB: "join"})
    assert room.state.user_level(BOB) == 0 and room.state.power_levels().kick == 50
    cached = room.state.power_levels()
    assert room.state.power_levels() is cached
    room.set_levels(kick=20, users={ALICE: 100, BOB: 30})
    assert room.state.power_levels().kick == 20 and room.state.user_level(BOB) == 30


def test_creator_is_not_special_once_power_levels_exist() -> None:
    room = Room()
    room.set_levels(users={})
    assert room.state.user_level(ALICE) == 0


def test_copy_is_independent() -> None:
    room = Room(members={BOB: "join"})
    snapshot = room.state.copy()
    room.force(MEMBER, BOB, {"membership": "leave"}, BOB)
    room.force(TOPIC, ALICE, {"topic": "new"}, "")
    room.set_levels(kick=1)
    assert snapshot.is_joined(BOB) and not room.state.is_joined(BOB)
    assert snapshot.topic is None and room.state.topic == "new"
    assert snapshot.power_levels().kick == 50 and room.state.power_levels().kick == 1
    snapshot.apply(_member(CAROL, "join"))
    assert not room.state.is_joined(CAROL)


def test_joined_members_snapshot_is_stable() -> None:
    state = RoomState()
    state.apply(_member(ALICE, "join"))
    first = state.joined_members()
    assert state.joined_members() is first  # no recomputation without a change
    state.apply(_member(ALICE, "join"))
    assert state.joined_members() is first  # a join → join change is not a change
    state.apply(_member(BOB, "join"))
    assert first == {ALICE} and state.joined_members() == {ALICE, BOB}


def test_malformed_member_content_is_not_joined() -> None:
    state = RoomState()
    state.apply(make_event(MEMBER, BOB, {"membership": 1}, state_key=BOB))
    state.apply(make_event(MEMBER, CAROL, [], state_key=CAROL))  # type: ignore[arg-type]
    assert state.joined_members() == frozenset() and state.membership(BOB) is None


# -- joined_members stays equal to a recomputation -------------------------------------

_member_events = st.lists(
    st.tuples(st.sampled_from(USERS), st.sampled_from(["join", "invite", "leave", "ban", "knock"])),
    max_size=60,
)


def _recompute(state: RoomState) -> frozenset:
    return frozenset(
        key[1] for key, event in state.items()
        if key[0] == MEMBER and event["content"].get("membership") == "join"
    )


@settings(max_examples=300, deadline=None)
@given(events=_member_events, split=st.integers(0, 60))
def test_joined_members_matches_recomputation(events: List[Tuple[str, str]], split: int) -> None:
    """Incremental upkeep equals a scan, also for a copy taken halfway and updated separately."""
    state = RoomState.from_events([make_event(CREATE, ALICE, {"room_version": "ps1", "kind": "chat"}, state_key="")])
    copy = None
    for index, (user, membership) in enumerate(events):
        if index == split:
            copy = state.copy()
        state.apply(_member(user, membership))
        if copy is not None:
            copy.apply(_member(user, "leave" if membership == "join" else "join"))
        assert state.joined_members() == _recompute(state)
        assert state.joined_count() == len(_recompute(state))
        for probe in USERS:
            assert state.is_joined(probe) == (state.membership(probe) == "join")
    if copy is not None:
        assert copy.joined_members() == _recompute(copy)


# -- power levels ----------------------------------------------------------------------


def test_power_level_defaults_without_an_event() -> None:
    pl = PowerLevels(None)
    assert (pl.users_default, pl.events_default, pl.state_default) == (0, 0, 50)
    assert (pl.ban, pl.kick, pl.redact, pl.invite) == (50, 50, 50, 0)
    assert pl.user_level(ALICE, ALICE) == 100 and pl.user_level(BOB, ALICE) == 0
    assert pl.user_level(BOB, frozenset({ALICE, BOB})) == 100 and pl.user_level(ALICE) == 0
    assert pl.event_level(MESSAGE, False) == 0 and pl.event_level(NAME, True) == 50


def test_power_level_view_over_content() -> None:
    pl = PowerLevels({"users": {BOB: 40}, "users_default": 5, "events": {MESSAGE: 7, NAME: 60}, "kick": 10})
    assert pl.exists and pl.user_level(BOB, BOB) == 40 and pl.user_level(ALICE, ALICE) == 5
    assert pl.event_level(MESSAGE, False) == 7 and pl.event_level(NAME, True) == 60
    assert pl.event_level("x.y", False) == 0 and pl.event_level("x.y", True) == 50
    assert pl.kick == 10 and pl.ban == 50
    assert PowerLevels({"kick": True}).kick == 50  # never trusts a bool, even in stored content
    with pytest.raises(AttributeError):
        pl.content = {}  # type: ignore[misc]


def test_validate_power_levels_content() -> None:
    assert validate_power_levels_content(default_power_levels(ALICE, "chat")) is None
    assert validate_power_levels_content({}) is None
    assert "boolean" in validate_power_levels_content({"ban": False})  # type: ignore[operator]
    assert validate_power_levels_content({"events": {NAME: 1.5}}) is not None
    assert validate_power_levels_content({"users": {"@x:y": -(2**53)}}) is not None
    assert validate_power_levels_content({"users": {"@x:y": -(2**53 - 1)}}) is None
    assert validate_power_levels_content([]) is not None


def test_kinds() -> None:
    assert ROOM_KINDS == ("chat", "dm", "forum", "wall", "blog", "space")
    assert [kind.value for kind in RoomKind] == list(ROOM_KINDS) and RoomKind.DM == "dm"
    assert all(is_valid_kind(kind) for kind in ROOM_KINDS)
    assert not any(is_valid_kind(kind) for kind in ("", "Chat", None, 1, RoomKind))


# -- the builder ------------------------------------------------------------------------


def _chain(creator: str, triples: List[Tuple[str, str, Dict[str, Any]]]) -> Tuple[RoomState, List[Any]]:
    """Turn builder triples into chained events, checking each against the state before it."""
    state = RoomState()
    results, prev, depth = [], [], 0
    for event_type, state_key, content in triples:
        depth += 1
        if event_type == CREATE:
            event = make_event(event_type, creator, content, state_key=state_key, depth=depth)
        else:
            auth = state.auth_event_ids_for(event_type, state_key, creator, content)
            event = make_event(
                event_type, creator, content, state_key=state_key, room_id=state.room_id,
                prev_events=prev, auth_events=auth, depth=depth,
            )
        results.append(check(event, state))
        state.apply(event)
        prev = [event["event_id"]]
    return state, results


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(ROOM_KINDS),
    public=st.booleans(),
    name=st.text(max_size=20),
    topic=st.none() | st.text(max_size=20),
)
def test_builder_output_passes_check_event_by_event(kind: str, public: bool, name: str, topic: Optional[str]) -> None:
    """Every triple the builder emits is allowed when chained, and the state says what was asked."""
    public = public and kind != "dm"
    triples = initial_state(ALICE, kind, name, topic, public, "quiet-heron")
    state, results = _chain(ALICE, triples)
    assert all(result.allowed for result in results), results
    assert [t for t, _, _ in triples[:5]] == [CREATE, MEMBER, POWER_LEVELS, JOIN_RULES, NAME]
    assert len(triples) == (6 if topic is not None else 5)
    assert state.kind == kind and state.name == name and state.topic == topic
    assert state.join_rule() == ("public" if public else "invite")
    assert state.joined_members() == {ALICE} and state.get(MEMBER, ALICE)["content"]["pseudonym"] == "quiet-heron"
    assert state.user_level(ALICE) == 100 and state.power_levels().invite == INVITE_LEVEL_BY_KIND[kind]


def test_builder_power_levels() -> None:
    content = initial_state(ALICE, "chat", "n", None, False, "p")[2][2]
    assert content["users"] == {ALICE: 100}
    assert (content["kick"], content["ban"], content["redact"], content["invite"]) == (50, 50, 50, 0)
    assert content["events"] == {NAME: 50, TOPIC: 50, POWER_LEVELS: 100}
    assert initial_state(ALICE, "forum", "n", None, True, "p")[2][2]["invite"] == 0
    assert initial_state(ALICE, "dm", "n", None, False, "p")[0][2] == {"room_version": "ps1", "kind": "dm"}


@pytest.mark.parametrize(
    "args, field",
    [
        ((ALICE, "dm", "n", None, True, "p"), "public"),
        ((ALICE, "party", "n", None, False, "p"), "kind"),
        (("alice", "chat", "n", None, False, "p"), "creator"),
        ((ALICE, "chat", 1, None, False, "p"), "name"),
        ((ALICE, "chat", "n", 2, False, "p"), "topic"),
        ((ALICE, "chat", "n", None, 1, "p"), "public"),
        ((ALICE, "chat", "n", None, False, None), "pseudonym"),
    ],
)
def test_builder_rejects_bad_input(args: Tuple[Any, ...], field: str) -> None:
    with pytest.raises(BadField) as info:
        initial_state(*args)
    assert info.value.field == field


def test_builder_room_lets_a_member_in_and_out() -> None:
    """End to end on builder state: invite, join, talk, rename (denied), kick, talk (denied)."""
    state, _ = _chain(ALICE, initial_state(ALICE, "chat", "Night owls", None, False, "quiet-heron"))
    last = [state.get(NAME, "")["event_id"]]
    steps: List[Tuple[str, str, Dict[str, Any], Any, bool]] = [
        (ALICE, MEMBER, {"membership": "invite"}, BOB, True),
        (BOB, MEMBER, {"membership": "join"}, BOB, True),
        (BOB, MESSAGE, {"msgtype": "m.text", "body": "hi"}, None, True),
        (BOB, NAME, {"name": "mine now"}, "", False),
        (ALICE, MEMBER, {"membership": "leave"}, BOB, True),
        (BOB, MESSAGE, {"msgtype": "m.text", "body": "hello?"}, None, False),
    ]
    for sender, event_type, content, state_key, expected in steps:
        kwargs: Dict[str, Any] = {} if state_key is None else {"state_key": state_key}
        auth = state.auth_event_ids_for(event_type, state_key, sender, content)
        event = make_event(event_type, sender, content, room_id=state.room_id, prev_events=last, auth_events=auth, **kwargs)
        result = check(event, state)
        assert result.allowed is expected, (event_type, sender, result)
        if expected:
            state.apply(event)
            last = [event["event_id"]]
    assert state.joined_members() == {ALICE} and state.membership(BOB) == "leave"


def test_fake_event_ids_have_the_ps1_shape() -> None:
    assert fake_event_id("a") == fake_event_id("a") != fake_event_id("b")
    assert fake_event_id().startswith("$") and len(fake_event_id()) == 44
