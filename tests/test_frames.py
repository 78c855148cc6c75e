"""Client frame codecs, request parsing and reply builders (docs/protocol.md §1, §3)."""

from __future__ import annotations

from typing import Any, Dict

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import (
    BadField, BadFrame, BadJSON, BadMsgpack, BadRequest, MissingField, NotInRoom, UnknownOp,
)  # fmt: skip
from protocol.frames import (
    JSON_CODEC, MSGPACK_CODEC, SUBPROTOCOLS, Auth, CreateRoom, History, Invite, Join, Leave, Login, Logout,
    Ping, Register, Rooms, Send, Sync, codec_for, error_frame, event_frame, ok_frame, parse_request,
    read_request_id,
)  # fmt: skip
from protocol.ids import RoomID, UserID
from tests.strategies import json_values

ROOM = "!" + "A" * 42 + "w"
USER = "@u7k3q9x2m4pd:example.org"
CODECS = [MSGPACK_CODEC, JSON_CODEC]


def test_subprotocols_and_codec_for() -> None:
    assert SUBPROTOCOLS == ("sharon.v1.msgpack", "sharon.v1.json")
    assert codec_for("sharon.v1.msgpack") is MSGPACK_CODEC and MSGPACK_CODEC.binary
    assert codec_for("sharon.v1.json") is JSON_CODEC and not JSON_CODEC.binary
    with pytest.raises(BadRequest) as info:
        codec_for("sharon.v2.json")
    assert info.value.field == "subprotocol"
    with pytest.raises(BadRequest):
        codec_for(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.subprotocol)
@given(value=json_values)
def test_codec_round_trip(codec: Any, value: Any) -> None:
    assert codec.decode(codec.encode({"op": "event", "event": value})) == {"op": "event", "event": value}


def test_json_codec_output_is_compact_utf8() -> None:
    assert JSON_CODEC.encode({"op": "ok", "id": 1, "s": "é"}) == '{"op":"ok","id":1,"s":"é"}'.encode()


def test_msgpack_codec_uses_str_not_bin() -> None:
    data = MSGPACK_CODEC.encode({"s": "x"})
    assert msgpack.unpackb(data, raw=True) == {b"s": b"x"}
    assert data == b"\x81\xa1s\xa1x"


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "malformed msgpack"),
        (b"\xc1", "malformed msgpack"),  # never-used type byte
        (msgpack.packb({"a": "bcdef"})[:-2], "malformed msgpack"),
        (msgpack.packb(1) + b"\x01", "trailing bytes"),
        (msgpack.packb({"op": "ping", "x": b"ab"}, use_bin_type=True), "bytes is not a JSON value"),
        (msgpack.packb({"a": msgpack.ExtType(5, b"x")}), "ExtType"),
        (msgpack.packb({"a": msgpack.Timestamp(1, 0)}), "Timestamp"),
        (msgpack.packb({"id": 1.0}), "floats"),
        (msgpack.packb({"id": 1.5}, use_single_float=True), "floats"),
        (msgpack.packb({1: 2}), "map key"),
        (msgpack.packb({b"k": 2}, use_bin_type=True), "keys must be strings"),
        (b"\x81\x91\x01\x02", "map key"),  # {[1]: 2}
        (b"\x82\xa1a\x01\xa1a\x02", "duplicate key"),
        (msgpack.packb({"n": 2**53}), "integers"),
        (msgpack.packb({"n": -(2**63)}), "integers"),
        (b"\xcf" + b"\xff" * 8, "integers"),
        (b"\xa2\xff\xfe", "UTF-8"),
        (b"\xa3\xed\xa0\x80", "UTF-8"),  # a surrogate encoded in a str
        (b"\x91" * 5000 + b"\x01", "nested"),
    ],
)
def test_msgpack_rejects(data: bytes, why: str) -> None:
    with pytest.raises(BadMsgpack) as info:
        MSGPACK_CODEC.decode(data)
    assert why in info.value.reason
    assert info.value.code == "bad_msgpack"


@pytest.mark.parametrize(
    "data", [b"", b"{", b'{"op":"ping","id":1.0}', b'{"a":1,"a":2}', b"NaN", b'"\\udc00"', b"\xff", b"[1e3]"]
)
def test_json_rejects(data: bytes) -> None:
    with pytest.raises(BadJSON):
        JSON_CODEC.decode(data)


def _both(frame: Dict[str, Any]) -> Any:
    """Parse ``frame`` after a trip through each codec; both must agree."""
    results = [parse_request(codec.decode(codec.encode(frame))) for codec in CODECS]
    assert results[0] == results[1]
    return results[0]


@pytest.mark.parametrize(
    "frame, expected",
    [
        ({"op": "register", "id": 1, "pseudonym": "quiet-heron", "password": "correct horse"},
         Register(1, "quiet-heron", "correct horse", None)),
        ({"op": "login", "id": "a", "pseudonym": "p", "password": "", "device_name": "phone"},
         Login("a", "p", "", "phone")),
        ({"op": "auth", "id": 0, "token": "shr_x"}, Auth(0, "shr_x")),
        ({"op": "logout", "id": 2**31 - 1}, Logout(2**31 - 1)),
        ({"op": "ping", "id": ""}, Ping("")),
        ({"op": "create_room", "id": 2, "kind": "chat", "name": "Night owls", "public": True},
         CreateRoom(2, "chat", "Night owls", None, True)),
        ({"op": "create_room", "id": 2, "kind": "blog", "name": "n", "topic": "t", "public": None},
         CreateRoom(2, "blog", "n", "t", False)),
        ({"op": "invite", "id": 3, "room_id": ROOM, "user_id": USER},
         Invite(3, RoomID(ROOM), UserID.parse(USER))),
        ({"op": "join", "id": 4, "room_id": ROOM}, Join(4, RoomID(ROOM))),
        ({"op": "leave", "id": 5, "room_id": ROOM}, Leave(5, RoomID(ROOM))),
        ({"op": "rooms", "id": 6, "extra": {"ignored": [1]}}, Rooms(6)),
        ({"op": "send", "id": 7, "room_id": ROOM, "txn_id": "t1", "body": "anyone up?"},
         Send(7, RoomID(ROOM), "t1", "anyone up?")),
        ({"op": "history", "id": 8, "room_id": ROOM}, History(8, RoomID(ROOM), "b", None, 50)),
        ({"op": "history", "id": 8, "room_id": ROOM, "dir": "f", "from": 0, "limit": 100},
         History(8, RoomID(ROOM), "f", 0, 100)),
        ({"op": "history", "id": 8, "room_id": ROOM, "dir": None, "from": None, "limit": None},
         History(8, RoomID(ROOM), "b", None, 50)),
        ({"op": "sync", "id": 9}, Sync(9, None)),
        ({"op": "sync", "id": 9, "since": 0}, Sync(9, 0)),
    ],
)  # fmt: skip
def test_parse_valid(frame: Dict[str, Any], expected: Any) -> None:
    assert _both(frame) == expected


def test_secrets_are_not_in_reprs() -> None:
    assert "hunter2" not in repr(Register(1, "p", "hunter2", None))
    assert "shr_secret" not in repr(Auth(1, "shr_secret"))


@pytest.mark.parametrize("frame", [[], "ping", None, 5, {"id": 1}, {"op": 5, "id": 1}, {"op": None, "id": 1}])
def test_bad_frame(frame: Any) -> None:
    with pytest.raises(BadFrame):
        parse_request(frame)


@pytest.mark.parametrize("rid", [None, -1, 2**31, True, 1.0, "x" * 65, [1], {"a": 1}])
def test_bad_id(rid: Any) -> None:
    frame = {"op": "ping"} if rid is None else {"op": "ping", "id": rid}
    with pytest.raises(BadFrame) as info:
        parse_request(frame)
    assert info.value.field == "id"


def test_unknown_op() -> None:
    with pytest.raises(UnknownOp) as info:
        parse_request({"op": "frobnicate" * 100, "id": 1})
    assert info.value.field == "op" and len(info.value.reason) < 100


BASE: Dict[str, Dict[str, Any]] = {
    "register": {"pseudonym": "p", "password": "pw"},
    "login": {"pseudonym": "p", "password": "pw"},
    "auth": {"token": "t"},
    "create_room": {"kind": "chat", "name": "n"},
    "invite": {"room_id": ROOM, "user_id": USER},
    "join": {"room_id": ROOM},
    "leave": {"room_id": ROOM},
    "send": {"room_id": ROOM, "txn_id": "t", "body": "b"},
    "history": {"room_id": ROOM},
}
MISSING = [(op, field) for op, fields in BASE.items() for field in fields]


@pytest.mark.parametrize("op, field", MISSING)
def test_missing_field(op: str, field: str) -> None:
    frame = {"op": op, "id": 1, **BASE[op]}
    del frame[field]
    with pytest.raises(MissingField) as info:
        parse_request(frame)
    assert info.value.field == field


@pytest.mark.parametrize(
    "op, field, value",
    [
        ("register", "pseudonym", 5), ("register", "password", None), ("register", "password", b"pw"),
        ("register", "device_name", 1), ("register", "device_name", "d" * 101), ("login", "pseudonym", ["p"]),
        ("auth", "token", 1), ("create_room", "kind", "party"), ("create_room", "kind", 1),
        ("create_room", "name", ""), ("create_room", "name", "n" * 256), ("create_room", "topic", "t" * 1001),
        ("create_room", "topic", 5), ("create_room", "public", 1), ("create_room", "public", "true"),
        ("invite", "room_id", "!nope"), ("invite", "user_id", "bob"), ("invite", "user_id", None),
        ("join", "room_id", 5), ("leave", "room_id", ROOM + "\n"), ("send", "txn_id", ""),
        ("send", "txn_id", "t" * 65), ("send", "txn_id", 1), ("send", "body", ""), ("send", "body", {"t": 1}),
        ("send", "room_id", None), ("history", "dir", "x"), ("history", "dir", True), ("history", "from", -1),
        ("history", "from", "5"), ("history", "from", True), ("history", "limit", 0), ("history", "limit", 101),
        ("history", "limit", False), ("sync", "since", -1), ("sync", "since", "0"), ("sync", "since", True),
    ],
)  # fmt: skip
def test_bad_field(op: str, field: str, value: Any) -> None:
    frame = {"op": op, "id": 1, **BASE.get(op, {}), field: value}
    with pytest.raises(BadField) as info:
        parse_request(frame)
    assert info.value.field == field
    assert info.value.reason


def test_length_limits_are_inclusive() -> None:
    assert parse_request({"op": "send", "id": 1, "room_id": ROOM, "txn_id": "t" * 64, "body": "b"}).txn_id == "t" * 64
    room = parse_request({"op": "create_room", "id": 1, "kind": "dm", "name": "n" * 255, "topic": "t" * 1000})
    assert isinstance(room, CreateRoom) and len(room.name) == 255
    assert parse_request({"op": "register", "id": 1, "pseudonym": "", "password": "", "device_name": "d" * 100})


@pytest.mark.parametrize(
    "frame, expected",
    [
        ({"op": "x", "id": 5}, 5), ({"id": "abc"}, "abc"), ({"id": -1}, None), ({"id": True}, None),
        ({"id": 2**31}, None), ({"id": "x" * 65}, None), ({"id": None}, None), ({}, None), ([1], None),
        (None, None), ("id", None), ({"id": [1]}, None), ({"id": 1.0}, None),
    ],
)  # fmt: skip
def test_read_request_id(frame: Any, expected: Any) -> None:
    assert read_request_id(frame) == expected


@given(st.one_of(json_values, st.dictionaries(st.sampled_from(["op", "id", "room_id", "body"]), json_values)))
def test_parse_never_crashes_on_json_values(frame: Any) -> None:
    try:
        parse_request(frame)
    except BadRequest:
        pass
    read_request_id(frame)


def test_reply_builders() -> None:
    assert ok_frame(1, {"room_id": ROOM, "pos": 7}) == {"op": "ok", "id": 1, "room_id": ROOM, "pos": 7}
    with pytest.raises(ValueError):
        ok_frame(1, {"op": "x"})
    err = BadField("room_id must be '!' followed by 43 URL-safe base64 characters", "room_id")
    assert error_frame(5, err) == {"op": "error", "id": 5, "code": "bad_field", "field": "room_id", "reason": err.reason}
    assert error_frame(None, NotInRoom("not joined")) == {
        "op": "error", "id": None, "code": "not_in_room", "reason": "not joined",
    }  # fmt: skip
    assert event_frame({"pos": 1}) == {"op": "event", "event": {"pos": 1}}
    for codec in CODECS:
        assert codec.decode(codec.encode(error_frame(None, err)))["id"] is None
