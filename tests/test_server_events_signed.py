"""Every stored event is hashed and signed by the server key it publishes; key and logs are safe."""

from __future__ import annotations

import json
import sqlite3
import stat

import pytest

from protocol.events import check_content_hash, compute_event_id, verify_event_signature
from protocol.signing import VerifyKey, verify_json
from tests.helpers import PASSWORD, http, room_with, user

pytestmark = pytest.mark.integration


def test_stored_events_verify_against_the_published_key(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room_id = await room_with(alice, bob)
        await alice.send(room_id, "signed, sealed")
        await alice.close(); await bob.close()
        return room_id

    room_id = run(scenario())
    status, doc = http(server, "GET", "/key/v2/server")
    assert status == 200 and doc["server_name"] == "localhost"
    keys = {kid: VerifyKey.from_b64(kid, v["key"]) for kid, v in doc["verify_keys"].items()}
    verify_json(doc, "localhost", keys)  # the key document is self-signed
    with sqlite3.connect(server.data_dir / "sharon.db") as db:
        rows = db.execute("SELECT event_id, room_id, json FROM events ORDER BY pos").fetchall()
    assert len(rows) == 7  # create, join, power levels, join rules, name, bob joins, message
    types = set()
    for event_id, row_room, raw in rows:
        event = json.loads(raw)
        types.add(event["type"])
        assert check_content_hash(event)
        verify_event_signature(event, "localhost", keys)
        assert str(compute_event_id(event)) == event_id
        assert row_room == room_id
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.message"} <= types
    create = json.loads(rows[0][2])
    assert "room_id" not in create and "!" + rows[0][0][1:] == room_id


def test_key_file_is_private_and_logs_are_structured_without_secrets(server, run):
    mode = stat.S_IMODE((server.data_dir / "signing.key").stat().st_mode)
    assert mode == 0o600

    async def scenario():
        alice = await user(server)
        room_id = await room_with(alice)
        await alice.send(room_id, "a private thought")
        token = alice.token
        await alice.close()
        return token

    token = run(scenario())
    server.stop()
    assert server.raw_lines and all(json.loads(line)["event"] for line in server.raw_lines)
    everything = "".join(server.raw_lines)
    assert token not in everything and PASSWORD not in everything
    assert "a private thought" not in everything
