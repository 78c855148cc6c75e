"""The hot-path builder of signed events gives exactly the general path's results."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings

from protocol.b64 import decode_b64
from protocol.canonical_json import encode_canonical, encode_object_parts, encode_value
from protocol.errors import BadJSON
from protocol.events import build_signed_event, compute_event_id, sign_event
from protocol.signing import SigningKey
from tests.strategies import message_events

KEY = SigningKey.from_seed("1", decode_b64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"))

BASE = {"room_id": "!r:x", "sender": "@a:x", "origin_server_ts": 1_700_000_000_000, "depth": 7,
        "prev_events": ["$abc"], "auth_events": ["$c", "$p"]}

EVENTS = [
    dict(BASE, type="m.room.message", content={"body": "héllo \u2028 \"q\" \\ \U0001F600", "n": -0, "x": [1, None, True]}),
    dict(BASE, type="m.room.message", content={}),
    dict(BASE, type="m.room.member", state_key="@b:x", content={"membership": "join", "displayname": "B"}),
    dict(BASE, type="m.room.member", state_key="@b:x", content={"membership": "leave"}),
    dict(BASE, type="m.room.power_levels", state_key="", content={"users": {"@a:x": 100}, "ban": 50, "extra": 1}),
    {"type": "m.room.create", "state_key": "", "sender": "@a:x", "origin_server_ts": 1, "depth": 1,
     "prev_events": [], "auth_events": [], "content": {"kind": "chat", "room_version": "ps1", "z": {"a": [1]}}},
    dict(BASE, type="x.custom", content={"b": 1, "a": 2}, unknown_top={"k": "v"}),
    dict(BASE, type="m.room.message", content={"body": "x"}, unsigned={"age": 1}),  # general path
    dict(BASE, type="m.room.message", content={"body": "x"}, hashes={"sha256": "old"}),  # general path
]


def _general(event):
    signed = sign_event(event, "domain", KEY)
    return signed, str(compute_event_id(signed)), encode_canonical(signed)


@pytest.mark.parametrize("event", EVENTS)
def test_build_signed_event_equals_the_general_path(event):
    before = copy.deepcopy(event)
    assert build_signed_event(event, "domain", KEY) == _general(event)
    assert event == before  # never mutates its argument


@settings(max_examples=60, deadline=None)
@given(message_events())
def test_build_signed_event_equals_the_general_path_on_generated_events(event):
    for key in ("hashes", "signatures", "unsigned"):
        event.pop(key, None)
    assert build_signed_event(event, "domain", KEY) == _general(event)


def test_build_signed_event_rejects_what_the_general_path_rejects():
    for bad in ({"body": 1.5}, {"n": 2**60}, {"s": "\ud800"}):
        event = dict(BASE, type="m.room.message", content=bad)
        with pytest.raises(BadJSON):
            _general(event)
        with pytest.raises(BadJSON):
            build_signed_event(event, "domain", KEY)


def test_object_parts_compose_to_the_canonical_encoding():
    value = {"b": [1, {"y": 2, "x": "é"}], "a": None, "ä": "z", "A": True}
    assert encode_object_parts({k: encode_value(v) for k, v in value.items()}).encode() == encode_canonical(value)


try:  # pytest puts tests/ on sys.path while tests/ is not a package
    from storage_backends import Backend, backend  # noqa: F401 - fixture
except ImportError:  # tests/ became a package
    from tests.storage_backends import Backend, backend  # noqa: F401


def test_concurrent_token_lookups_share_queries_and_each_gets_its_own_device(backend):
    import asyncio

    async def go():
        db = await backend.open()
        store = db.accounts
        await store.create_account("@a:x", "Alice", "alice", "h", 1)
        devices = {}
        for i in range(1, 522):  # more than one IN (...) chunk
            token = i.to_bytes(2, "big") * 16
            devices[token] = await store.create_device("@a:x", f"D{i}", None, token, i)
        before = store.token_queries
        wanted = list(devices) + [b"\xff" * 32, list(devices)[5]]  # an unknown one, a repeat
        found = await asyncio.gather(*(store.device_for_token(t) for t in wanted))
        assert found == [devices.get(t) for t in wanted]
        assert store.token_queries - before <= 2  # 522 distinct hashes: two IN (...) queries
        assert await store.device_for_token(b"\xfe" * 32) is None
        await db.close()

    backend.run(go())
