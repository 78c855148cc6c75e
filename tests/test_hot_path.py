"""The hot-path builder of signed events gives exactly the general path's results."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings

from protocol.b64 import decode_b64
from protocol.canonical_json import encode_around, encode_canonical, encode_checked
from protocol.errors import BadJSON
from protocol.events import build_signed_event, build_unsigned_event, compute_event_id, sign_event, verify_event_signature
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


@settings(max_examples=60, deadline=None)
@given(message_events())
def test_an_event_signed_later_is_byte_identical_and_verifies(event):
    """Decision 0018: the reactor builds the event unsigned (hashes, ID, known size); the
    writer finishes it. The finished bytes are the general path's, to the byte."""
    import json

    for key in ("hashes", "signatures", "unsigned"):
        event.pop(key, None)
    signed, event_id, raw = _general(event)
    hashed, unsigned_id, unsigned = build_unsigned_event(event, "domain", KEY)
    assert unsigned_id == event_id and "signatures" not in hashed
    assert hashed == {k: v for k, v in signed.items() if k != "signatures"}
    assert unsigned.size == len(raw)  # the size limit is checked before signing
    assert unsigned.finish() == raw and unsigned.finish() is unsigned.finish()
    verify_event_signature(json.loads(raw), "domain", {KEY.key_id: KEY.verify_key()})


@settings(max_examples=80, deadline=None)
@given(message_events())
def test_stored_events_decode_as_the_standard_library_decodes_them(event):
    """decode_stored (orjson, on the history and replay path) reads the server's own
    canonical bytes exactly as json.loads does."""
    import json

    from protocol.canonical_json import decode_stored

    for key in ("hashes", "signatures", "unsigned"):
        event.pop(key, None)
    raw = build_signed_event(event, "domain", KEY)[2]
    assert decode_stored(raw) == json.loads(raw)
    assert decode_stored(memoryview(raw).tobytes()) == json.loads(raw)


def test_an_object_assembles_around_a_member_known_later():
    value = {"b": [1, {"y": 2}], "a": None, "signatures": {"s": {"k": "v"}}, "z": 1, "ä": "z"}
    head, tail = encode_around({k: v for k, v in value.items() if k != "signatures"}, "signatures")
    assert head + encode_checked(value["signatures"]) + tail == encode_canonical(value)
    head, tail = encode_around({}, "only")
    assert head + b"1" + tail == encode_canonical({"only": 1})
    head, tail = encode_around({"b": 1}, "a")  # nothing before it
    assert head + b"2" + tail == b'{"a":2,"b":1}'
    head, tail = encode_around({"a": 1}, "b")  # nothing after it
    assert head + b"2" + tail == b'{"a":1,"b":2}'


try:  # pytest puts tests/ on sys.path while tests/ is not a package
    from storage_backends import Backend, backend  # noqa: F401 - fixture
except ImportError:  # tests/ became a package
    from tests.storage_backends import Backend, backend  # noqa: F401


def test_a_group_commit_is_atomic_signed_and_keeps_bodies_out_of_errors(backend):
    """The group commit's writer path (decision 0018: events signed on the writer; on
    SQLite plain executemany of SQLAlchemy-compiled statements): a failing statement rolls
    the whole batch back with SQLAlchemy's IntegrityError and no bound values in its text;
    the writer then goes on; a statement it cannot run itself goes through SQLAlchemy."""
    import json

    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    from sharon_server.storage.rows import EventRow, TxnRow
    from sharon_server.storage.schema_social import search_docs

    secret = "a very private body 7f3a"

    def row(pos, room="!r:x"):
        event = dict(BASE, room_id=room, type="m.room.message", content={"body": f"{secret} {pos}"})
        _, event_id, unsigned = build_unsigned_event(event, "domain", KEY)
        return EventRow(pos, event_id, room, "m.room.message", None, "@a:x", 1, unsigned), event

    async def stored(db):
        async with db.engine.connect() as conn:
            return {r.pos: r.json for r in await conn.execute(sa.text("SELECT pos, json FROM events"))}

    async def go():
        db = await backend.open()
        ins = sa.insert(search_docs)
        (e1, ev1), (e2, _) = row(1), row(2)
        await db.events.persist_batch(events=[e1], txns=[TxnRow("@a:x", "t1", e1.event_id, 1)],
                                      extra=[(ins, [{"pos": 1, "room_id": "!r:x", "event_id": e1.event_id, "body": "x"}])])
        assert (await stored(db))[1] == build_signed_event(ev1, "domain", KEY)[2]  # signed on the writer
        with pytest.raises(IntegrityError) as info:  # the txn is taken: e2 must not stay either
            await db.events.persist_batch(events=[e2], txns=[TxnRow("@a:x", "t1", e2.event_id, 2)])
        assert secret not in str(info.value)
        assert sorted(await stored(db)) == [1]
        expanding = sa.text("DELETE FROM search_docs WHERE pos IN :p").bindparams(sa.bindparam("p", expanding=True))
        (e3, _) = row(3)
        await db.events.persist_batch(events=[e3], extra=[(expanding, [{"p": [1]}])])
        assert sorted(await stored(db)) == [1, 3]
        async with db.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM search_docs"))).scalar() == 0
        assert json.loads((await stored(db))[3])["signatures"]["domain"]

    backend.run(go())


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


class _Sub:
    """A hub subscriber that records what each delivery call carried."""

    def __init__(self, user_id):
        from protocol.frames import JSON_CODEC

        self.user_id = user_id
        self.codec = JSON_CODEC
        self.replaying = False
        self.calls = []

    def deliver_prepared(self, prepared):
        self.calls.append([prepared])

    def deliver_frames(self, frames):
        self.calls.append(list(frames))


def _pumped(chunk, events, subs):
    """Publish ``events`` (dicts) to one room with ``subs`` and run the pump to the end."""
    import asyncio
    import json

    from sharon_server.hub import Hub

    async def go():
        hub = Hub(lambda payload, binary: json.loads(payload)["event"]["pos"], chunk)
        for s in subs:
            hub.add_connection(s, s.user_id, ["!r:x"])
        for e in events:
            hub.publish(e["pos"], "!r:x", e)
        while hub._pumping:  # noqa: SLF001 - the pump's own flag
            await asyncio.sleep(0)
        return hub

    return asyncio.run(go())


def test_hub_writes_each_connection_once_per_turn_in_stream_order():
    subs = [_Sub("@a:x"), _Sub("@b:x")]
    events = [{"pos": p, "type": "m.room.message", "content": {}} for p in (1, 2, 3)]
    hub = _pumped(100, events, subs)
    for s in subs:
        assert s.calls == [[1, 2, 3]]  # the whole committed burst in one write
    assert hub.frames_out == 6 and hub.delivered_pos == 3


def test_hub_small_turns_keep_order_across_turns():
    subs = [_Sub(f"@u{i}:x") for i in range(3)]
    events = [{"pos": p, "type": "m.room.message", "content": {}} for p in range(1, 6)]
    _pumped(2, events, subs)  # 15 frames, two per turn
    for s in subs:
        assert [f for call in s.calls for f in call] == [1, 2, 3, 4, 5]
        assert all(len(call) <= 2 for call in s.calls)


class _FakeSocket:
    def __init__(self, takes):
        self.takes = takes
        self.sent = []

    def send(self, data):
        if isinstance(self.takes, BaseException):
            raise self.takes
        self.sent.append(bytes(data[: self.takes]))
        return min(self.takes, len(data))


def _transport(sock, buffered=0):
    from twisted.internet.tcp import Server

    t = object.__new__(Server)  # only the attributes write_now reads
    t.connected, t.disconnecting, t._writeDisconnected = 1, False, False
    t._tempDataLen, t.dataBuffer, t.offset = buffered, b"", 0
    t.socket = sock
    t.written = []
    t.write = t.written.append
    return t


def test_write_now_sends_directly_and_buffers_only_the_rest():
    from sharon_server.ws import write_now

    t = _transport(_FakeSocket(100))
    write_now(t, b"abc")
    assert t.socket.sent == [b"abc"] and t.written == []
    t = _transport(_FakeSocket(2))  # a partial send: the rest goes to Twisted, in order
    write_now(t, b"abcdef")
    assert t.socket.sent == [b"ab"] and t.written == [b"cdef"]
    t = _transport(_FakeSocket(BlockingIOError()))
    write_now(t, b"abc")
    assert t.written == [b"abc"]
    t = _transport(_FakeSocket(ConnectionResetError()))
    write_now(t, b"abc")
    assert t.written == [b"abc"]  # Twisted's own path meets the error and closes
    t = _transport(_FakeSocket(100), buffered=5)  # bytes already waiting: never jump the queue
    write_now(t, b"abc")
    assert t.socket.sent == [] and t.written == [b"abc"]
