"""Bad frames and bad HTTP requests get one clear error; the connection and server keep serving."""

from __future__ import annotations

import json

import msgpack
import pytest

from clients.client import SharonClient
from tests.helpers import PASSWORD, fresh_pseudonym, http, messages_until, room_with, user

pytestmark = pytest.mark.integration


async def _error_for(client: SharonClient, data: bytes, binary: bool) -> dict:
    await client.send_raw(data, binary=binary)
    frame = await client.next_frame()
    assert frame["op"] == "error", frame
    return frame


def test_bad_msgpack_frames_get_error_frames_and_connection_survives(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room_id = await room_with(alice, bob)
        await bob.sync()
        cases = [
            (b"\xc1", "bad_msgpack", None),                                           # never-used byte
            (b"\x92\x01", "bad_msgpack", None),                                       # truncated array
            (msgpack.packb([1, 2]), "bad_frame", None),                              # not an object
            (msgpack.packb({"id": "x1"}), "bad_frame", "op"),                         # no op
            (msgpack.packb({"op": "fly", "id": "x2"}), "unknown_op", "op"),
            (msgpack.packb({"op": "send", "id": "x3", "room_id": room_id, "txn_id": "t", "body": 5}), "bad_field", "body"),
            (msgpack.packb({"op": "send", "id": "x4", "room_id": room_id, "txn_id": "t"}), "missing_field", "body"),
            (msgpack.packb({"op": "send", "id": "x5", "room_id": "!bad", "txn_id": "t", "body": "x"}), "bad_field", "room_id"),
            (msgpack.packb({"op": "ping", "id": "x6", "n": 1.5}), "bad_msgpack", None),   # floats are not in the data model
            (msgpack.packb({"op": "ping", "id": "x7", "b": b"\x00"}, use_bin_type=True), "bad_msgpack", None),
            (msgpack.packb({"op": "ping", "id": "x8", "n": 2**60}), "bad_msgpack", None),
            (msgpack.packb({"op": "history", "id": "x9", "room_id": room_id, "limit": 1000}), "bad_field", "limit"),
            (msgpack.packb({"op": "ping", "id": "x" * 65}), "bad_frame", "id"),
            (msgpack.packb({"op": "ping", "id": "big", "pad": "z" * 70000}), "too_large", None),
        ]
        for data, code, field in cases:
            frame = await _error_for(alice, data, True)
            assert frame["code"] == code, (data[:40], frame)
            if field is not None:
                assert frame.get("field") == field, frame
            assert frame["reason"]
        # The same connection still works, and so does everyone else's.
        assert await alice.ping() == {}
        sent = await alice.send(room_id, "still fine")
        [got] = await messages_until(bob, 1)
        assert got["event_id"] == sent["event_id"]
        await alice.close(); await bob.close()

    run(scenario())


def test_bad_json_frames_and_operations_before_auth(server, run):
    async def scenario():
        anon = await SharonClient.connect(server.ws_url, encoding="json")
        for data, code in [
            (b'{"op": "ping", "id": 1', "bad_json"),
            (b'{"op": "ping", "id": 1, "id": 2}', "bad_json"),
            (b'{"op": "ping", "id": 1, "x": 1e5}', "bad_json"),
            (b'{"op": "ping", "id": 1, "x": NaN}', "bad_json"),
            (b'{"op": "ping", "id": 1, "x": "\\ud800"}', "bad_json"),
            (b'\xff\xfe', "bad_json"),
        ]:
            frame = await _error_for(anon, data, False)
            assert frame["code"] == code, (data, frame)
        frame = await _error_for(anon, json.dumps({"op": "rooms", "id": "r"}).encode(), False)
        assert frame["code"] == "not_authenticated" and frame["id"] == "r"
        frame = await _error_for(anon, json.dumps({"op": "send", "id": "s", "room_id": "!" + "A" * 43,
                                                   "txn_id": "t", "body": "x"}).encode(), False)
        assert frame["code"] == "not_authenticated"
        await anon.register(fresh_pseudonym(), PASSWORD)
        assert await anon.rooms() == []
        await anon.close()

    run(scenario())


def test_oversized_body_is_refused_naming_the_limit(server, run):
    async def scenario():
        alice = await user(server)
        room_id = await room_with(alice)
        from protocol.errors import TooLarge
        with pytest.raises(TooLarge) as exc:
            await alice.send(room_id, "x" * 4001)
        assert exc.value.field == "body" and "4000" in exc.value.reason
        assert (await alice.send(room_id, "x" * 4000))["duplicate"] is False
        await alice.close()

    run(scenario())


def test_a_flood_of_invalid_frames_closes_only_that_connection(server, run):
    async def scenario():
        alice = await user(server, "alice")
        flooder = await SharonClient.connect(server.ws_url)
        for _ in range(100):
            await flooder.send_raw(b"\xc1", binary=True)
        codes = set()
        try:
            while True:
                codes.add((await flooder.next_frame(10))["code"])
        except ConnectionError:
            pass
        assert codes == {"bad_msgpack"}
        assert flooder.close_code == 4008
        assert await alice.ping() == {}
        await alice.close()

    run(scenario())


def test_http_endpoints_and_their_errors(server):
    status, body = http(server, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["server_name"] == "localhost"
    headers = {"Content-Type": "application/json"}
    pseudonym = fresh_pseudonym("http")
    status, reg = http(server, "POST", "/api/v1/register",
                       json.dumps({"pseudonym": pseudonym, "password": PASSWORD}).encode(), headers)
    assert status == 200 and reg["token"].startswith("shr_") and reg["pseudonym"] == pseudonym
    status, login = http(server, "POST", "/api/v1/login",
                         json.dumps({"pseudonym": pseudonym, "password": PASSWORD}).encode(), headers)
    assert status == 200 and login["user_id"] == reg["user_id"] and login["device_id"] != reg["device_id"]
    status, err = http(server, "POST", "/api/v1/register",
                       json.dumps({"pseudonym": pseudonym, "password": PASSWORD}).encode(), headers)
    assert status == 409 and err["code"] == "pseudonym_taken"
    status, err = http(server, "POST", "/api/v1/register", b'{"pseudonym": 3}', headers)
    assert status == 400 and err == {"code": "bad_field", "field": "pseudonym", "reason": "pseudonym must be a string"}
    status, err = http(server, "POST", "/api/v1/login", b'{"pseudonym": "x", "password": 1.5}', headers)
    assert status == 400 and err["code"] == "bad_json"
    status, err = http(server, "POST", "/api/v1/login", b"x" * 70000, headers)
    assert status == 413 and err["code"] == "too_large"
    status, err = http(server, "POST", "/api/v1/logout")
    assert status == 401 and err["code"] == "unknown_token"
    status, _ = http(server, "POST", "/api/v1/logout", headers={"Authorization": "Bearer " + login["token"]})
    assert status == 200
    status, err = http(server, "POST", "/api/v1/logout", headers={"Authorization": "Bearer " + login["token"]})
    assert status == 401
    status, body = http(server, "GET", "/health")
    assert status == 200


def test_handshake_without_a_known_subprotocol_is_refused(server):
    import base64
    import os
    import socket

    def handshake(protocol_header: str) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"{protocol_header}\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request.encode())
            return sock.recv(4096)

    assert handshake("").startswith(b"HTTP/1.1 400")
    assert handshake("Sec-WebSocket-Protocol: mqtt\r\n").startswith(b"HTTP/1.1 400")
    accepted = handshake("Sec-WebSocket-Protocol: sharon.v1.json\r\n")
    assert accepted.startswith(b"HTTP/1.1 101") and b"sharon.v1.json" in accepted
