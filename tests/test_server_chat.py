"""End-to-end chat through the real server process over real WebSockets."""

from __future__ import annotations

import asyncio

import pytest

from clients.client import SharonClient
from protocol.errors import (
    BadCredentials, Forbidden, InvalidPseudonym, NotAuthenticated, NotInRoom, PseudonymTaken,
    RoomNotFound, UnknownToken, WeakPassword,
)
from tests.helpers import PASSWORD, all_history, fresh_pseudonym, messages_until, room_with, user

pytestmark = pytest.mark.integration


def test_two_users_chat_in_real_time_across_encodings(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob", encoding="json")
        room_id = await room_with(alice, bob)
        await alice.sync()
        await bob.sync()
        sent = await alice.send(room_id, "anyone up?")
        [got] = await messages_until(bob, 1)
        assert got["event_id"] == sent["event_id"]
        assert got["content"] == {"msgtype": "m.text", "body": "anyone up?"}
        assert got["sender"] == alice.user_id
        assert got["sender_pseudonym"] == alice.pseudonym
        # The user ID is opaque: it never carries the pseudonym.
        assert alice.pseudonym.lower() not in alice.user_id
        await bob.send(room_id, "yes, here")
        [own] = await messages_until(alice, 1)
        assert own["event_id"] == sent["event_id"]  # senders see their own message too
        [reply] = await messages_until(alice, 1)
        assert reply["content"]["body"] == "yes, here"
        assert reply["sender_pseudonym"] == bob.pseudonym
        await alice.close(); await bob.close()

    run(scenario())


def test_send_is_idempotent_per_transaction_id(server, run):
    async def scenario():
        alice = await user(server)
        room_id = await room_with(alice)
        first = await alice.send(room_id, "hello", txn_id="t-1")
        again = await alice.send(room_id, "hello", txn_id="t-1")
        assert first["duplicate"] is False
        assert again == {**first, "duplicate": True}
        both = await asyncio.gather(*(alice.send(room_id, "race", txn_id="t-2") for _ in range(5)))
        assert len({r["event_id"] for r in both}) == 1
        assert sum(not r["duplicate"] for r in both) == 1
        bodies = [e["content"]["body"] for e in await all_history(alice, room_id) if e["type"] == "m.room.message"]
        assert bodies == ["hello", "race"]
        await alice.close()

    run(scenario())


def test_history_pages_backwards_and_forwards_without_gaps(server, run):
    async def scenario():
        alice = await user(server)
        room_id = await room_with(alice)
        sent = [await alice.send(room_id, f"m{i}") for i in range(57)]
        backwards = await all_history(alice, room_id, "b", limit=10)
        forwards = await all_history(alice, room_id, "f", limit=7)
        assert [e["pos"] for e in backwards] == [e["pos"] for e in forwards]
        positions = [e["pos"] for e in forwards]
        assert positions == sorted(set(positions))
        messages = [e for e in forwards if e["type"] == "m.room.message"]
        assert [e["event_id"] for e in messages] == [s["event_id"] for s in sent]
        assert forwards[0]["type"] == "m.room.create"
        page = await alice.history(room_id, dir="b", limit=5)
        assert [e["content"]["body"] for e in page["events"]] == ["m56", "m55", "m54", "m53", "m52"]
        await alice.close()

    run(scenario())


def test_resume_after_reconnect_has_no_gap_and_no_duplicate(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room_id = await room_with(alice, bob)
        await bob.sync()
        for i in range(5):
            await alice.send(room_id, f"before {i}")
        seen = await messages_until(bob, 5)
        last_pos = seen[-1]["pos"]
        token = bob.token
        await bob.close()
        for i in range(30):
            await alice.send(room_id, f"while away {i}")
        bob2 = await SharonClient.connect(server.ws_url)
        await bob2.auth(token)
        # More messages race with the resume itself.
        racing = asyncio.gather(*(alice.send(room_id, f"during {i}") for i in range(30)))
        await bob2.sync(since=last_pos)
        await racing
        tail = await alice.send(room_id, "after")
        got = await messages_until(bob2, 61)
        positions = [e["pos"] for e in got]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert positions[0] > last_pos
        assert got[-1]["event_id"] == tail["event_id"]
        expected = [e["event_id"] for e in await all_history(alice, room_id, "f")
                    if e["type"] == "m.room.message" and e["pos"] > last_pos]
        assert [e["event_id"] for e in got] == expected
        await alice.close(); await bob2.close()

    run(scenario())


def test_acknowledged_messages_survive_sigkill(server, run):
    async def burst():
        alice = await user(server)
        room_id = await room_with(alice)
        acks = await asyncio.gather(*(alice.send(room_id, f"burst {i}") for i in range(300)))
        return alice.token, room_id, [a["event_id"] for a in acks]

    token, room_id, acked = run(burst())
    server.kill()  # SIGKILL right after the acks: no shutdown code runs
    server.start()

    async def check():
        alice = await SharonClient.connect(server.ws_url)
        await alice.auth(token)
        stored = {e["event_id"] for e in await all_history(alice, room_id, "f", limit=100)}
        assert set(acked) <= stored
        after = await alice.send(room_id, "still here")
        assert after["pos"] > 0
        await alice.close()

    run(check())


def test_invite_only_rooms_and_leaving(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        await bob.sync()
        room_id = (await alice.create_room("chat", "Carers", public=False))["room_id"]
        with pytest.raises(Forbidden):
            await bob.join(room_id)
        await alice.invite(room_id, bob.user_id)
        invite = await bob.next_event()
        assert invite["type"] == "m.room.member" and invite["state_key"] == bob.user_id
        assert invite["content"]["membership"] == "invite"
        assert [r["membership"] for r in await bob.rooms()] == ["invite"]
        await bob.join(room_id)
        summary = [r for r in await bob.rooms() if r["room_id"] == room_id][0]
        assert summary["members"] == 2 and summary["public"] is False and summary["kind"] == "chat"
        await bob.leave(room_id)
        with pytest.raises(NotInRoom):
            await bob.send(room_id, "am I still here?")
        with pytest.raises(NotInRoom):
            await bob.history(room_id)
        await alice.close(); await bob.close()

    run(scenario())


def test_nonmember_cannot_send_or_read_and_unknown_rooms_are_reported(server, run):
    async def scenario():
        alice = await user(server, "alice")
        eve = await user(server, "eve")
        room_id = await room_with(alice)
        with pytest.raises(NotInRoom) as exc:
            await eve.send(room_id, "let me in")
        assert exc.value.field == "room_id"
        with pytest.raises(NotInRoom):
            await eve.history(room_id)
        with pytest.raises(RoomNotFound):
            await eve.join("!" + "A" * 43)
        await alice.close(); await eve.close()

    run(scenario())


def test_accounts_devices_and_logout(server, run):
    async def scenario():
        alice = await user(server, "alice")
        pseudonym = alice.pseudonym
        with pytest.raises(PseudonymTaken):
            other = await SharonClient.connect(server.ws_url)
            await other.register(pseudonym.upper(), PASSWORD)
        await other.close()
        probe = await SharonClient.connect(server.ws_url)
        with pytest.raises(WeakPassword):
            await probe.register(fresh_pseudonym(), "short")
        with pytest.raises(InvalidPseudonym):
            await probe.register("a@b.c", PASSWORD)
        with pytest.raises(BadCredentials):
            await probe.login(pseudonym, "wrong password")
        with pytest.raises(BadCredentials):  # checked against the dummy hash made at start-up
            await probe.login(fresh_pseudonym(), PASSWORD)
        with pytest.raises(NotAuthenticated):
            await probe.rooms()
        phone = await SharonClient.connect(server.ws_url)
        laptop = await SharonClient.connect(server.ws_url)
        await phone.login(pseudonym, PASSWORD)
        await laptop.login(pseudonym, PASSWORD)
        assert phone.device_id != laptop.device_id and phone.user_id == laptop.user_id == alice.user_id
        room_id = await room_with(alice)
        await phone.sync(); await laptop.sync()
        sent = await alice.send(room_id, "to all my devices")
        for device in (phone, laptop):
            [got] = await messages_until(device, 1)
            assert got["event_id"] == sent["event_id"]
        phone_token = phone.token
        phone_twin = await SharonClient.connect(server.ws_url)
        await phone_twin.auth(phone_token)
        await phone.logout()
        with pytest.raises(NotAuthenticated):  # every connection on that token is signed out
            await phone_twin.rooms()
        with pytest.raises(NotAuthenticated):
            await phone.rooms()
        with pytest.raises(UnknownToken):
            await probe.auth(phone_token)
        assert [r["room_id"] for r in await laptop.rooms()] == [room_id]
        for c in (alice, probe, phone, phone_twin, laptop):
            await c.close()

    run(scenario())
