"""Client library, token store, CLI parsing and counter, without the real server.

The library tests talk to a tiny in-process autobahn server on 127.0.0.1 that answers a few
scripted ops, so request/reply matching, error mapping, the event queue and connection loss
are exercised over real sockets on the shared loop.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Any, Dict, List, Optional

import msgpack
import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from hypothesis import given, strategies as st

from clients import client as client_mod
from clients.cli import counter, render
from clients.cli.main import build_parser, format_error, main
from clients.client import SharonClient, error_from_reply
from clients.config import (
    ConfigError, Session, config_dir, delete_session, load_session, save_session, session_path,
)
from clients.runtime import install_reactor
from protocol import errors
from protocol.frames import codec_for


# -- error mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(errors.ERROR_CODES))
def test_every_error_code_maps_to_its_class(code):
    exc = error_from_reply({"op": "error", "id": 1, "code": code, "reason": "why", "field": "body"})
    assert type(exc) is errors.ERROR_CODES[code]
    assert (exc.code, exc.reason, exc.field) == (code, "why", "body")


def test_unknown_error_code_becomes_sharon_error_keeping_the_code():
    exc = error_from_reply({"op": "error", "id": 1, "code": "new_in_v2", "reason": "later"})
    assert type(exc) is errors.SharonError
    assert (exc.code, exc.reason, exc.field) == ("new_in_v2", "later", None)


def test_error_without_field_or_reason_still_readable():
    exc = error_from_reply({"op": "error", "id": None, "code": "not_in_room"})
    assert isinstance(exc, errors.NotInRoom) and exc.field is None and exc.reason == "not_in_room"


# -- token store ------------------------------------------------------------------------------


def _session(server: str = "ws://127.0.0.1:8448/ws", **kw: Any) -> Session:
    fields = dict(server=server, token="shr_secret", user_id="@abc:localhost", pseudonym="quiet-heron", device_id="DEV1")
    fields.update(kw)
    return Session(**fields)


def test_session_round_trip_and_private_modes(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARON_CONFIG_DIR", str(tmp_path / "cfg"))
    old_umask = os.umask(0)  # even with a permissive umask the files stay private
    try:
        path = save_session(_session(last_pos=42, room_pos={"!r": 7}))
    finally:
        os.umask(old_umask)
    assert path.parent.parent == tmp_path / "cfg" == config_dir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = load_session("ws://127.0.0.1:8448/ws")
    assert loaded == _session(last_pos=42, room_pos={"!r": 7})
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_overwriting_keeps_mode_and_servers_are_separate(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARON_CONFIG_DIR", str(tmp_path))
    save_session(_session())
    os.chmod(session_path("ws://127.0.0.1:8448/ws"), 0o644)
    save_session(_session(token="shr_new"))
    save_session(_session(server="wss://chat.example.org/ws", token="shr_other"))
    assert stat.S_IMODE(session_path("ws://127.0.0.1:8448/ws").stat().st_mode) == 0o600
    assert load_session("ws://127.0.0.1:8448/ws").token == "shr_new"
    assert load_session("wss://chat.example.org/ws").token == "shr_other"
    assert session_path("ws://a/ws") != session_path("ws://a/ws/")
    assert delete_session("ws://127.0.0.1:8448/ws") is True
    assert delete_session("ws://127.0.0.1:8448/ws") is False
    assert load_session("ws://127.0.0.1:8448/ws") is None
    assert load_session("wss://chat.example.org/ws").token == "shr_other"


def test_default_config_dir_is_platform_user_dir(monkeypatch):
    import platformdirs

    monkeypatch.delenv("SHARON_CONFIG_DIR", raising=False)
    assert str(config_dir()) == platformdirs.user_config_dir("sharon")


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"server": "x"}', b'{"server": "x", "token": 1, "user_id": "u", "pseudonym": "p", "device_id": "d"}'])
def test_corrupt_session_file_is_a_config_error(tmp_path, monkeypatch, content):
    monkeypatch.setenv("SHARON_CONFIG_DIR", str(tmp_path))
    path = session_path("ws://x/ws")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        load_session("ws://x/ws")


# -- counter and rendering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "chars, state",
    [(0, "empty"), (1, "ok"), (3599, "ok"), (3600, "warn"), (4000, "warn"), (4001, "over"), (10000, "over")],
)
def test_counter_states_at_the_boundaries(chars, state):
    c = counter.count("x" * chars)
    assert c.state.value == state
    assert c.label() == f"{chars}/4000"
    assert c.sendable is (state in ("ok", "warn"))


def test_counter_counts_code_points_like_the_server():
    assert counter.count("\U0001f600" * 4000).sendable  # 4000 emoji: 4000 characters
    assert counter.count("\u00e9" * 4001).state is counter.CounterState.OVER
    assert counter.MAX_BODY_CHARS == 4000


@given(st.text(max_size=4100))
def test_counter_sendable_exactly_when_the_server_accepts_the_length(text):
    assert counter.count(text).sendable == (1 <= len(text) <= 4000)


def test_render_strips_terminal_controls_and_shows_only_pseudonyms():
    event = {
        "pos": 9, "type": "m.room.message", "sender": "@u7k3q9x2m4pd:localhost", "sender_pseudonym": "quiet-heron",
        "content": {"msgtype": "m.text", "body": "hi\x1b[2J\nthere\u202egnp.exe"}, "origin_server_ts": 1763712000000,
    }
    line = render.message_line(event)
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line
    assert "quiet-heron: hi" in line and "@u7k3q9x2m4pd" not in line
    assert line.startswith("[") and line[3] == ":" and line[6:8] == "] "
    assert json.loads(render.event_json(event)) == event


def test_render_describes_membership_by_pseudonym():
    base = {"type": "m.room.member", "sender": "@a:h", "sender_pseudonym": "alice", "origin_server_ts": 0}
    join = dict(base, state_key="@a:h", content={"membership": "join", "pseudonym": "alice"})
    invite = dict(base, state_key="@b:h", content={"membership": "invite", "pseudonym": "bob"})
    kick = dict(base, state_key="@b:h", content={"membership": "leave", "pseudonym": "bob"})
    assert render.describe(join) == "alice joined"
    assert render.describe(invite) == "alice invited bob"
    assert render.describe(kick) == "alice removed bob"
    assert render.describe(dict(base, type="m.room.power_levels", content={})) is None
    assert render.event_line(invite).endswith("* alice invited bob")


# -- CLI parsing and local errors ----------------------------------------------------------------


def test_cli_parses_every_command(monkeypatch):
    monkeypatch.delenv("SHARON_SERVER", raising=False)
    p = build_parser()
    a = p.parse_args(["create-room", "Night owls", "--kind", "chat", "--public", "--topic", "late"])
    assert (a.command, a.name, a.kind, a.public, a.topic, a.server) == (
        "create-room", "Night owls", "chat", True, "late", "ws://127.0.0.1:8448/ws")
    a = p.parse_args(["--server", "ws://h:1/ws", "--json-frames", "tail", "!r", "--since", "5", "--count", "2", "--json"])
    assert (a.server, a.json_frames, a.room, a.since, a.count, a.json) == ("ws://h:1/ws", True, "!r", 5, 2, True)
    a = p.parse_args(["history", "!r", "--limit", "7"])
    assert (a.limit, a.json, a.all) == (7, False, False)
    assert p.parse_args(["invite", "!r", "@b:h"]).user == "@b:h"
    assert p.parse_args(["send", "!r", "hello there"]).text == "hello there"
    assert p.parse_args(["login", "quiet-heron"]).device_name == "sharon cli"
    for argv in (["register", "x"], ["logout"], ["rooms", "--json"], ["join", "!r"], ["leave", "!r"], ["chat"]):
        p.parse_args(argv)


def test_cli_default_server_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHARON_SERVER", "ws://example.org:9/ws")
    assert build_parser().parse_args(["rooms"]).server == "ws://example.org:9/ws"


@pytest.mark.parametrize(
    "argv",
    [[], ["fly"], ["create-room", "x"], ["--server", "http://h/ws", "rooms"], ["--server", "ws://", "rooms"], ["create-room", "x", "--kind", "castle"], ["tail", "!r", "--count", "0"],
     ["history", "!r", "--limit", "many"], ["send", "!r"]],
)
def test_cli_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: sharon" in capsys.readouterr().err


def test_error_line_format():
    assert format_error("not_in_room", "you are not in this room", "room_id") == (
        "sharon: error: not_in_room: you are not in this room (field: room_id)")
    assert format_error("timeout", "slow") == "sharon: error: timeout: slow"


def test_commands_need_a_login(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHARON_CONFIG_DIR", str(tmp_path))
    assert main(["--server", "ws://127.0.0.1:9/ws", "rooms"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sharon: error: not_logged_in: not logged in to ws://127.0.0.1:9/ws")
    assert "sharon login" in err


def test_send_refuses_an_over_long_message_before_connecting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHARON_CONFIG_DIR", str(tmp_path))
    assert main(["send", "!r", "x" * 4001]) == 1
    assert capsys.readouterr().err.strip() == (
        "sharon: error: too_large: the message is 4001 characters; the limit is 4000 (field: body)")


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


def test_unreachable_server_is_a_connection_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHARON_CONFIG_DIR", str(tmp_path))
    url = _refused_url()
    save_session(_session(server=url))
    assert main(["--server", url, "rooms"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sharon: error: connection: cannot connect to {url}")


# -- the library over a real socket ---------------------------------------------------------------


class _FakeProtocol(WebSocketServerProtocol):
    """Answers scripted ops: ping, fail, push, echo, slow (never answers), hang (drops the connection)."""

    def onConnect(self, request: Any) -> Optional[str]:
        mode = self.factory.mode
        if mode == "deny":
            raise ConnectionDeny(403, "go away")
        if mode == "no-subprotocol":
            return None
        self.codec = codec_for(request.protocols[0])
        return request.protocols[0]

    def _send(self, frame: Dict[str, Any]) -> None:
        self.sendMessage(self.codec.encode(frame), isBinary=self.codec.binary)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        frame = self.codec.decode(payload)
        self.factory.received.append(frame)
        op, rid = frame.get("op"), frame.get("id")
        if op == "fail":
            self._send({"op": "error", "id": rid, "code": frame["code"], "reason": "because", "field": "f"})
        elif op == "push":
            for pos in range(1, frame["n"] + 1):
                self._send({"op": "event", "event": {"pos": pos, "room_id": "!r", "type": "m.room.message"}})
            self._send({"op": "ok", "id": rid})
        elif op == "hang":
            self.transport.abortConnection()
        elif op == "slow":
            self.factory.late_reply = lambda: self._send({"op": "ok", "id": rid})
        else:
            self._send({"op": "ok", "id": rid, "echo": {k: v for k, v in frame.items() if k not in ("op", "id")}})


@pytest.fixture
def fake_server(loop_and_reactor):
    """An in-process WebSocket server; set ``.mode`` to "deny" or "no-subprotocol" to misbehave."""
    _loop, reactor = loop_and_reactor
    factory = WebSocketServerFactory()
    factory.protocol = _FakeProtocol
    factory.mode = "ok"
    factory.received: List[Dict[str, Any]] = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    factory.url = f"ws://127.0.0.1:{port.getHost().port}/ws"
    yield factory
    port.stopListening()


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_requests_get_their_own_replies_and_typed_errors(fake_server, run, encoding):
    async def scenario():
        c = await SharonClient.connect(fake_server.url, encoding=encoding)
        assert c.subprotocol == f"sharon.v1.{encoding}" and not c.closed
        assert await c.ping() == {"echo": {}}
        page = await c.history("!r", from_pos=17, limit=5)
        assert page == {"echo": {"room_id": "!r", "dir": "b", "from": 17, "limit": 5}}
        sent = await c.send("!r", "hi")
        txn = sent["echo"]["txn_id"]
        assert 1 <= len(txn) <= 64 and txn != (await c.send("!r", "hi"))["echo"]["txn_id"]
        assert (await c.create_room("chat", "N"))["echo"] == {"kind": "chat", "name": "N", "public": False}
        with pytest.raises(errors.NotInRoom) as exc:
            await c.request("fail", code="not_in_room")
        assert (exc.value.reason, exc.value.field) == ("because", "f")
        ids = [f["id"] for f in fake_server.received]
        assert ids == sorted(set(ids)) and all(type(i) is int for i in ids)
        await c.close()
        assert c.closed
        with pytest.raises(ConnectionError):
            await c.ping()

    run(scenario())


def test_events_queue_in_order_and_track_last_pos(fake_server, run):
    async def scenario():
        c = await SharonClient.connect(fake_server.url)
        await c.request("push", n=3)
        assert [(await c.next_event(5))["pos"] for _ in range(3)] == [1, 2, 3]
        assert c.last_pos == 3
        with pytest.raises(TimeoutError):
            await c.next_event(timeout_s=0.05)
        seen: List[int] = []
        c.add_event_listener(lambda e: seen.append(e["pos"]))
        await c.request("push", n=2)
        assert seen == [1, 2]
        await c.close()

    run(scenario())


def test_unmatched_frames_go_to_next_frame(fake_server, run):
    async def scenario():
        c = await SharonClient.connect(fake_server.url, encoding="json")
        await c.send_raw(b'{"op":"ping","id":"raw-1"}', binary=False)
        assert await c.next_frame(5) == {"op": "ok", "id": "raw-1", "echo": {}}
        await c.close()

    run(scenario())


def test_event_queue_overflow_closes_the_connection_loudly(fake_server, run, monkeypatch):
    monkeypatch.setattr(client_mod, "MAX_QUEUED_EVENTS", 5)

    async def scenario():
        c = await SharonClient.connect(fake_server.url)
        with pytest.raises(ConnectionError, match="more than 5 live events"):
            await c.request("push", n=8)
        assert [(await c.next_event(5))["pos"] for _ in range(5)] == [1, 2, 3, 4, 5]
        with pytest.raises(ConnectionError, match="more than 5 live events"):
            await c.next_event(5)
        assert c.closed

    run(scenario())


def test_connection_loss_fails_pending_requests(fake_server, run):
    async def scenario():
        c = await SharonClient.connect(fake_server.url)
        with pytest.raises(ConnectionError, match="lost"):
            await c.request("hang")
        with pytest.raises(ConnectionError):
            await c.next_event(5)
        assert c.closed

    run(scenario())


def test_request_timeout(fake_server, run):
    async def scenario():
        c = await SharonClient.connect(fake_server.url, request_timeout_s=0.2)
        with pytest.raises(TimeoutError, match="no reply to 'slow'"):
            await c.request("slow")
        fake_server.late_reply()  # a late reply to the abandoned request is dropped, not queued
        await c.send_raw(msgpack.packb({"op": "ping", "id": "r"}), binary=True)
        assert (await c.next_frame(5))["id"] == "r"
        await c.close()

    run(scenario())


@pytest.mark.parametrize("mode, message", [("deny", "403"), ("no-subprotocol", "did not accept subprotocol 'sharon.v1.msgpack'")])
def test_refused_handshake_fails_clearly(fake_server, run, mode, message):
    fake_server.mode = mode

    async def scenario():
        with pytest.raises(ConnectionError, match="refused the WebSocket connection") as exc:
            await SharonClient.connect(fake_server.url)
        assert message in str(exc.value)

    run(scenario())


def test_connect_errors(run):
    async def scenario():
        with pytest.raises(ConnectionError, match="cannot connect to"):
            await SharonClient.connect(_refused_url())
        with pytest.raises(ValueError):
            await SharonClient.connect("ws://127.0.0.1:1/ws", encoding="xml")
        with pytest.raises(ValueError, match="bad server URL"):
            await SharonClient.connect("http://nope")

    run(scenario())


def test_install_reactor_is_idempotent():
    first = install_reactor()
    assert install_reactor() == first
    loop, reactor = first
    assert reactor.running and reactor._asyncioEventloop is loop
