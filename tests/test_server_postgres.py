"""The real server on PostgreSQL: chat, history, and acknowledged sends surviving SIGKILL."""

from __future__ import annotations

import asyncio

import pytest

from clients.client import SharonClient
from tests.helpers import all_history, messages_until, room_with, user

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_chat_and_crash_safety_on_postgresql(pg_server, run):
    assert any(r.get("event") == "server.listening" and r.get("database") == "postgresql" for r in pg_server.logs)

    async def chat():
        alice = await user(pg_server, "alice")
        bob = await user(pg_server, "bob")
        room_id = await room_with(alice, bob)
        await bob.sync()
        acks = await asyncio.gather(*(alice.send(room_id, f"pg {i}") for i in range(100)))
        got = await messages_until(bob, 100)
        assert [e["event_id"] for e in got] == [a["event_id"] for a in sorted(acks, key=lambda a: a["pos"])]
        await alice.close(); await bob.close()
        return alice.token, room_id, [a["event_id"] for a in acks]

    token, room_id, acked = run(chat())
    pg_server.kill()
    pg_server.start()

    async def check():
        alice = await SharonClient.connect(pg_server.ws_url)
        await alice.auth(token)
        stored = [e["event_id"] for e in await all_history(alice, room_id, "f", limit=100)]
        assert set(acked) <= set(stored)
        await alice.close()

    run(check())
