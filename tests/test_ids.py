"""Typed identifiers: accept and reject cases, and Hypothesis round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given

from protocol.errors import BadField
from protocol.ids import EventID, RoomID, ServerName, UserID
from tests.strategies import event_ids, room_ids, server_names, user_ids

HASH = "A" * 42 + "_"


@pytest.mark.parametrize(
    "name",
    ["localhost", "example.org", "example.org:8448", "1.2.3.4", "1.2.3.4:1234", "[1234:5678::abcd]",
     "[1234:5678::abcd]:5678", "a-b.c0", "localhost:1", "localhost:65535"],
)  # fmt: skip
def test_server_name_accepts(name: str) -> None:
    assert str(ServerName.parse(name)) == name


@pytest.mark.parametrize(
    "name",
    ["", "-a.org", "a-.org", "a..org", "a_b.org", "exa mple.org", "example.org:", "example.org:0",
     "example.org:65536", "example.org:8a", "example.org:+80", "256.1.1.1", "[::1", "[zz::1]",
     "example.org\n", "1.2.3.4\n", "\u0661.2.3.4", "\u0661\u0662.org", "a" * 254, 42, None,
     "example.org:8448\n", "ex\u00e4mple.org"],
)  # fmt: skip
def test_server_name_rejects(name: object) -> None:
    with pytest.raises(BadField) as info:
        ServerName.parse(name)
    assert info.value.field == "server_name"


@pytest.mark.parametrize("uid", ["@a:example.org", "@u7k3q9x2m4pd:localhost:8448", "@a.b_c=d/e+f-g:1.2.3.4"])
def test_user_id_accepts(uid: str) -> None:
    parsed = UserID.parse(uid)
    assert str(parsed) == uid
    assert parsed.localpart == uid[1:].split(":", 1)[0]


@pytest.mark.parametrize(
    "uid",
    ["a:example.org", "@:example.org", "@a", "@A:example.org", "@a b:example.org", "@a\n:example.org",
     "@a:example.org\n", "@a:", "@\u00e9:example.org", "@a:" + "b" * 260, 7, ["@a:b"]],
)  # fmt: skip
def test_user_id_rejects(uid: object) -> None:
    with pytest.raises(BadField) as info:
        UserID.parse(uid, field="user_id")
    assert info.value.field == "user_id"


def test_room_and_event_ids() -> None:
    assert str(RoomID.parse("!" + HASH)) == "!" + HASH
    event_id = EventID.parse("$" + HASH)
    assert event_id.to_room_id() == RoomID("!" + HASH)


@pytest.mark.parametrize(
    "body",
    ["A" * 42, "A" * 44, "A" * 42 + "+", "A" * 42 + "/", "A" * 42 + "=", "A" * 43 + "\n", "A" * 42 + "\n",
     "A" * 42 + "\u00c0"],
)  # fmt: skip
def test_room_and_event_ids_reject(body: str) -> None:
    with pytest.raises(BadField):
        RoomID.parse("!" + body)
    with pytest.raises(BadField):
        EventID.parse("$" + body)


def test_wrong_sigil_and_type() -> None:
    with pytest.raises(BadField):
        RoomID.parse("$" + HASH)
    with pytest.raises(BadField):
        EventID.parse("!" + HASH)
    with pytest.raises(BadField):
        RoomID.parse(None)


@given(server_names)
def test_generated_server_names_round_trip(name: str) -> None:
    assert str(ServerName.parse(name)) == name


@given(user_ids)
def test_generated_user_ids_round_trip(uid: str) -> None:
    assert UserID.parse(uid) == UserID.parse(str(UserID.parse(uid)))
    assert str(UserID.parse(uid)) == uid


@given(room_ids, event_ids)
def test_generated_hash_ids_round_trip(room_id: str, event_id: str) -> None:
    assert str(RoomID.parse(room_id)) == room_id
    assert str(EventID.parse(event_id)) == event_id
    with pytest.raises(BadField):
        RoomID.parse(room_id + "\n")
