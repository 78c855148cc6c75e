"""DMs, typing, read markers, unread counts and published character limits, against the real server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from clients.client import SharonClient
from protocol.errors import BadField, Forbidden, MissingField, NotFound, NotInRoom, RoomNotFound, TooLarge
from tests.helpers import PASSWORD, room_with, user

pytestmark = pytest.mark.integration


def _grant_admin(server, pseudonym: str) -> None:
    out = subprocess.run([sys.executable, "-m", "sharon_server", "admin", "--data-dir", str(server.data_dir),
                          "grant", pseudonym], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


async def _service(server, settings=None, members=(), staff=()):
    """An admin and a new service with ``members`` (role member) and ``staff`` (clinicians)."""
    admin = await user(server, "admin")
    _grant_admin(server, admin.pseudonym)
    service = (await admin.request("create_service", name="Perinatal",
                                   **({"settings": settings} if settings else {})))["service_id"]
    for member in members:
        await admin.request("service_add_member", service_id=service, user_id=member.user_id)
    for person in staff:
        await admin.request("service_add_member", service_id=service, user_id=person.user_id, role="clinician")
    return admin, service


async def _second_device(server, client: SharonClient) -> SharonClient:
    other = await SharonClient.connect(server.ws_url)
    await other.login(client.pseudonym, PASSWORD)
    return other


async def _nothing_pushed(client: SharonClient) -> None:
    """Pushes are written before later replies: after a ping round trip none may be queued."""
    await client.ping()
    with pytest.raises((TimeoutError, asyncio.TimeoutError)):
        await client.next_frame(timeout_s=0.2)


async def _close(*clients: SharonClient) -> None:
    for c in clients:
        await c.close()


def test_dm_rules_reuse_and_two_people_only(server, run):
    async def scenario():
        alice, bob, eve = await user(server, "alice"), await user(server, "bob"), await user(server, "eve")
        carol, dave = await user(server, "carol"), await user(server, "dave")
        admin, service = await _service(server, members=(alice, bob, eve), staff=(carol,))
        made = await alice.request("create_dm", user_id=bob.user_id)
        dm = made["room_id"]
        assert made["created"] is True and made["pseudonym"] == bob.pseudonym
        listed = {r["room_id"]: r for r in await bob.rooms()}
        assert listed[dm]["kind"] == "dm" and listed[dm]["membership"] == "join" and listed[dm]["members"] == 2
        assert listed[dm]["public"] is False and listed[dm]["dm_user_id"] == alice.user_id
        assert listed[dm]["dm_pseudonym"] == alice.pseudonym
        again = await bob.request("create_dm", user_id=alice.user_id, service_id=service)
        assert again == {"room_id": dm, "created": False, "user_id": alice.user_id, "pseudonym": alice.pseudonym}
        await bob.send(dm, "hello from bob")

        # a third person can neither join nor be invited; DMs come only from create_dm
        with pytest.raises(Forbidden):
            await carol.join(dm)
        with pytest.raises(Forbidden):
            await alice.invite(dm, carol.user_id)
        with pytest.raises(BadField) as exc:
            await alice.create_room("dm", "sneaky")
        assert exc.value.field == "kind"

        # no shared service: refused, with or without a service named
        with pytest.raises(Forbidden):
            await alice.request("create_dm", user_id=dave.user_id)
        with pytest.raises(Forbidden):
            await alice.request("create_dm", user_id=dave.user_id, service_id=service)

        # member_dms off: member<->member refused, member<->clinician still allowed (both ways)
        await admin.request("service_settings", service_id=service, settings={"member_dms": False})
        with pytest.raises(Forbidden) as refused:
            await alice.request("create_dm", user_id=eve.user_id)
        assert "staff" in refused.value.reason
        assert (await eve.request("create_dm", user_id=carol.user_id))["created"] is True
        assert (await carol.request("create_dm", user_id=alice.user_id))["created"] is True
        # an existing DM is still reused after the setting changed
        assert (await alice.request("create_dm", user_id=bob.user_id))["room_id"] == dm

        # leaving is allowed; bringing someone back in follows the rules of the day...
        await bob.leave(dm)
        assert dm not in {r["room_id"] for r in await bob.rooms()}
        with pytest.raises(Forbidden):
            await alice.request("create_dm", user_id=bob.user_id)
        # ...and then opening again brings the same DM back, with its history
        await admin.request("service_settings", service_id=service, settings={"member_dms": True})
        assert (await alice.request("create_dm", user_id=bob.user_id))["room_id"] == dm
        history = await bob.history(dm)
        assert any(e.get("content", {}).get("body") == "hello from bob" for e in history["events"])
        await _close(alice, bob, eve, carol, dave, admin)

    run(scenario())


def test_simultaneous_requests_open_one_dm(server, run):
    async def scenario():
        alice, bob, carol = await user(server, "alice"), await user(server, "bob"), await user(server, "carol")
        admin, service = await _service(server, members=(alice, bob, carol))
        results = await asyncio.gather(
            alice.request("create_dm", user_id=bob.user_id), bob.request("create_dm", user_id=alice.user_id),
            alice.request("create_dm", user_id=bob.user_id, service_id=service),
            carol.request("create_dm", user_id=alice.user_id))
        assert len({r["room_id"] for r in results[:3]}) == 1
        assert sorted(r["created"] for r in results[:3]) == [False, False, True]
        assert results[3]["room_id"] != results[0]["room_id"]
        dms = [r for r in await alice.rooms() if r["kind"] == "dm"]
        assert sorted(r["dm_user_id"] for r in dms) == sorted([bob.user_id, carol.user_id])
        await _close(alice, bob, carol, admin)

    run(scenario())


def test_dm_bad_input(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, service = await _service(server, members=(alice, bob))
        with pytest.raises(BadField) as exc:
            await alice.request("create_dm", user_id=5)
        assert exc.value.field == "user_id"
        with pytest.raises(MissingField):
            await alice.request("create_dm")
        with pytest.raises(NotFound) as nf:
            await alice.request("create_dm", user_id="@unozzzzzzzzz:localhost")
        assert nf.value.field == "user_id"
        with pytest.raises(BadField):
            await alice.request("create_dm", user_id=alice.user_id)
        with pytest.raises(BadField) as exc:
            await alice.request("create_dm", user_id=bob.user_id, service_id="!nope")
        assert exc.value.field == "service_id"
        room = await room_with(alice, bob)
        with pytest.raises(RoomNotFound):  # a chat room is not a service
            await alice.request("create_dm", user_id=bob.user_id, service_id=room)
        with pytest.raises(BadField) as exc:
            await alice.request("typing", room_id=room, typing="yes")
        assert exc.value.field == "typing"
        with pytest.raises(MissingField):
            await alice.request("typing", room_id=room)
        with pytest.raises(BadField) as exc:
            await alice.request("mark_read", room_id=room, pos=-1)
        assert exc.value.field == "pos"
        with pytest.raises(BadField) as exc:
            await alice.request("unread", room_ids="x")
        assert exc.value.field == "room_ids"
        with pytest.raises(BadField):
            await alice.request("limits", room_id=7)
        await _close(alice, bob, admin)

    run(scenario())


def test_typing_reaches_the_other_member_only_and_stops_on_send(server, run):
    async def scenario():
        alice, bob, outsider = await user(server, "alice"), await user(server, "bob"), await user(server, "out")
        admin, service = await _service(server, members=(alice, bob, outsider))
        dm = (await alice.request("create_dm", user_id=bob.user_id))["room_id"]
        elsewhere = await room_with(outsider, alice)
        for c in (alice, bob, outsider):
            await c.sync()
        result = await alice.request("typing", room_id=dm, typing=True)
        assert result["timeout_ms"] == 10_000
        frame = await bob.next_frame()
        assert frame == {"op": "typing", "room_id": dm, "user_ids": [alice.user_id],
                         "pseudonyms": {alice.user_id: alice.pseudonym}}
        await alice.request("typing", room_id=dm, typing=True)  # a refresh changes nothing: no push
        await _nothing_pushed(bob)
        await _nothing_pushed(outsider)
        await _nothing_pushed(alice)  # the typer is not told about themselves
        await alice.send(dm, "hi")
        assert (await bob.next_frame())["user_ids"] == []  # sending stops the indicator
        await bob.request("typing", room_id=dm, typing=True)
        assert (await alice.next_frame())["user_ids"] == [bob.user_id]
        await bob.request("typing", room_id=dm, typing=False)
        assert (await alice.next_frame())["user_ids"] == []
        with pytest.raises(NotInRoom):
            await bob.request("typing", room_id=elsewhere, typing=True)
        await _close(alice, bob, outsider, admin)

    run(scenario())


def test_typing_expires_after_the_configured_ttl(server_factory, run):
    server = server_factory(env={"SHARON_TYPING_TTL_MS": "300"})

    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        room = await room_with(alice, bob)
        await bob.sync()
        assert (await alice.request("typing", room_id=room, typing=True))["timeout_ms"] == 300
        assert (await bob.next_frame())["user_ids"] == [alice.user_id]
        expired = await bob.next_frame(timeout_s=10)  # the expiry push, no sleeping
        assert expired == {"op": "typing", "room_id": room, "user_ids": [], "pseudonyms": {}}
        await _close(alice, bob)

    run(scenario())


def test_read_markers_are_monotonic_and_synced_to_other_devices(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        room = await room_with(alice, bob)
        phone = await _second_device(server, alice)
        for c in (alice, phone):
            await c.sync()
        sent = [(await bob.send(room, f"m{i}"))["pos"] for i in range(3)]
        assert (await alice.request("unread"))["unread"] == {room: 3}
        marked = await alice.request("mark_read", room_id=room, pos=sent[1])
        assert marked == {"room_id": room, "pos": sent[1], "unread": 1}
        assert await phone.next_frame() == {"op": "read_marker", "room_id": room, "pos": sent[1]}
        await _nothing_pushed(alice)  # the device that marked is not told
        back = await phone.request("mark_read", room_id=room, pos=sent[0])
        assert back["pos"] == sent[1] and back["unread"] == 1  # never moves back
        await _nothing_pushed(alice)
        await alice.send(room, "my own messages never count")
        summary = {r["room_id"]: r for r in await alice.rooms()}[room]
        assert summary["unread"] == 1 and summary["read_pos"] == sent[1]
        everything = await phone.request("mark_read", room_id=room)
        assert everything["unread"] == 0 and everything["pos"] > sent[2]
        assert (await alice.next_frame())["pos"] == everything["pos"]
        clamped = await phone.request("mark_read", room_id=room, pos=2**40)
        assert clamped["pos"] < 2**40
        after = (await bob.send(room, "later"))["pos"]
        await bob.send(room, "and later")
        assert (await alice.request("unread", room_ids=[room])) == {"unread": {room: 2}, "read_pos": {room: clamped["pos"]}}
        outsider = await user(server, "out")
        with pytest.raises(NotInRoom):
            await outsider.request("mark_read", room_id=room, pos=after)
        with pytest.raises(NotInRoom):
            await outsider.request("unread", room_ids=[room])
        await _close(alice, phone, bob, outsider)

    run(scenario())


def test_unread_counts_in_rooms_and_service_rooms_survive_a_restart(server, run):
    state = {}

    async def before():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, service = await _service(server, members=(alice, bob))
        room = (await alice.request("create_room", kind="chat", name="Night feeds", public=True,
                                    service_id=service))["room_id"]
        await bob.join(room)
        for i in range(3):
            await bob.send(room, f"m{i}")
        listed = {r["room_id"]: r for r in (await alice.request("service_rooms", service_id=service))["rooms"]}
        assert listed[room]["unread"] == 3
        assert {r["room_id"]: r for r in await alice.rooms()}[room]["unread"] == 3
        marked = await alice.request("mark_read", room_id=room)
        await bob.send(room, "after the marker")
        listed = {r["room_id"]: r for r in (await alice.request("service_rooms", service_id=service))["rooms"]}
        assert listed[room]["unread"] == 1 and listed[room]["read_pos"] == marked["pos"]
        state.update(alice=alice.pseudonym, room=room, service=service, pos=marked["pos"])
        await _close(alice, bob, admin)

    run(before())
    server.restart()

    async def after():
        alice = await SharonClient.connect(server.ws_url)
        await alice.login(state["alice"], PASSWORD)
        summary = {r["room_id"]: r for r in await alice.rooms()}[state["room"]]
        assert summary["unread"] == 1 and summary["read_pos"] == state["pos"]
        listed = (await alice.request("service_rooms", service_id=state["service"]))["rooms"]
        assert [r["unread"] for r in listed if r["room_id"] == state["room"]] == [1]
        await alice.close()

    run(after())


def test_limits_are_published_and_enforced_per_kind_and_service(server, run):
    async def scenario():
        alice, bob, outsider = await user(server, "alice"), await user(server, "bob"), await user(server, "out")
        admin, service = await _service(server, settings={"char_limits": {"chat": 50, "dm": 20}},
                                        members=(alice, bob))
        defaults = await alice.request("limits")
        assert defaults["max_body_chars"] == 4000 and set(defaults["char_limits"].values()) == {4000}
        room = (await alice.request("create_room", kind="chat", name="C", service_id=service))["room_id"]
        published = await alice.request("limits", room_id=room)
        assert published["max_body_chars"] == 50 and published["kind"] == "chat"
        assert published["char_limits"]["dm"] == 20 and published["service_id"] == service
        await alice.send(room, "x" * 50)
        with pytest.raises(TooLarge) as exc:
            await alice.send(room, "x" * 51)
        assert exc.value.field == "body" and "limit here is 50" in exc.value.reason
        dm = (await alice.request("create_dm", user_id=bob.user_id, service_id=service))["room_id"]
        assert (await bob.request("limits", room_id=dm))["max_body_chars"] == 20
        await bob.send(dm, "y" * 20)
        with pytest.raises(TooLarge) as exc:
            await bob.send(dm, "y" * 21)
        assert "limit here is 20" in exc.value.reason
        await admin.request("service_settings", service_id=service, settings={"char_limits": {"dm": 30}})
        assert (await bob.request("limits", room_id=dm))["max_body_chars"] == 30
        with pytest.raises(NotInRoom):
            await outsider.request("limits", room_id=dm)
        with pytest.raises(RoomNotFound):
            await alice.request("limits", room_id="!" + "A" * 43)
        await _close(alice, bob, outsider, admin)

    run(scenario())


def test_cli_dm_read_unread_limits_and_send_checks_the_published_limit(server, run, tmp_path):
    from tests import test_cli as cli  # the CLI harness: one config directory per person

    alice = cli.User(server, tmp_path / "alice", "alice").register()
    bob = cli.User(server, tmp_path / "bob", "bob").register()

    async def setup():
        admin, service = await _service(server, settings={"char_limits": {"dm": 20}})
        for uid in (alice.user_id, bob.user_id):
            await admin.request("service_add_member", service_id=service, user_id=uid)
        await admin.close()
        return service

    service = run(setup())
    dm = alice.ok("dm", bob.user_id, "--service", service).strip()
    assert cli.ROOM_ID.match(dm)
    assert bob.ok("dm", alice.user_id).strip() == dm
    bob.ok("send", dm, "hello alice")
    bob.ok("send", dm, "are you there?")
    [line] = alice.ok("unread").splitlines()
    assert line.startswith(dm) and bob.pseudonym in line and line.endswith("unread=2")
    assert int(alice.ok("read", dm).strip()) > 0
    assert alice.ok("unread") == ""
    assert f"{dm}" in alice.ok("unread", "--all")
    limits = alice.ok("limits", dm).splitlines()
    assert limits[0] == "max_body_chars=20" and "dm=20" in limits
    assert alice.ok("limits").splitlines()[0] == "max_body_chars=4000"
    refused = alice.run("send", dm, "x" * 21)
    assert refused.returncode == 1 and "too_large" in refused.stderr and "limit is 20" in refused.stderr
    alice.ok("send", dm, "x" * 20)
    failed = alice.run("dm", "@nobodyzzzzzz:localhost")
    assert failed.returncode == 1 and "not_found" in failed.stderr


def test_request_parsing_names_the_bad_field():
    """Pure: the dms request types validate every field (no server needed)."""
    from protocol import dms as P
    from protocol.frames import parse_request

    room, uid = "!" + "A" * 43, "@uabc:localhost"
    made = parse_request({"op": "create_dm", "id": 1, "user_id": uid})
    assert isinstance(made, P.CreateDm) and str(made.user_id) == uid and made.service_id is None
    assert parse_request({"op": "typing", "id": 1, "room_id": room, "typing": False}).typing is False
    assert parse_request({"op": "mark_read", "id": 1, "room_id": room}).pos is None
    assert parse_request({"op": "unread", "id": 1}).room_ids is None
    assert parse_request({"op": "limits", "id": 1, "room_id": None}).room_id is None
    bad = [
        ({"op": "create_dm", "id": 1, "user_id": "nobody"}, BadField, "user_id"),
        ({"op": "create_dm", "id": 1, "user_id": uid, "service_id": 3}, BadField, "service_id"),
        ({"op": "typing", "id": 1, "room_id": room, "typing": 1}, BadField, "typing"),
        ({"op": "typing", "id": 1, "room_id": room}, MissingField, "typing"),
        ({"op": "mark_read", "id": 1, "room_id": room, "pos": "5"}, BadField, "pos"),
        ({"op": "mark_read", "id": 1, "room_id": room, "pos": True}, BadField, "pos"),
        ({"op": "mark_read", "id": 1}, MissingField, "room_id"),
        ({"op": "unread", "id": 1, "room_ids": [room, "!x"]}, BadField, "room_ids"),
        ({"op": "unread", "id": 1, "room_ids": [room] * (P.MAX_ROOM_IDS + 1)}, BadField, "room_ids"),
        ({"op": "limits", "id": 1, "room_id": "x"}, BadField, "room_id"),
    ]
    for frame, error, field in bad:
        with pytest.raises(error) as exc:
            parse_request(frame)
        assert exc.value.field == field, frame
    assert P.typing_frame("!r", {"@b:x": "bee", "@a:x": "ay"}) == {
        "op": "typing", "room_id": "!r", "user_ids": ["@a:x", "@b:x"], "pseudonyms": {"@a:x": "ay", "@b:x": "bee"}}


def test_unread_counts_stop_at_99(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        room = await room_with(alice, bob)
        sends = [bob.send(room, f"m{i}") for i in range(105)]
        await asyncio.gather(*sends)
        assert (await alice.request("unread", room_ids=[room]))["unread"] == {room: 99}
        marked = await alice.request("mark_read", room_id=room)
        assert marked["unread"] == 0
        invited = await room_with(bob, public=False)
        await bob.invite(invited, alice.user_id)
        summary = {r["room_id"]: r for r in await alice.rooms()}
        assert summary[invited]["membership"] == "invite" and summary[invited]["unread"] == 0
        await _close(alice, bob)

    run(scenario())


def test_what_came_before_joining_is_not_unread(server, run):
    state = {}

    async def before():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        room = (await bob.create_room("chat", "Busy", public=True))["room_id"]
        for i in range(3):
            await bob.send(room, f"old {i}")
        await alice.join(room)
        assert (await alice.request("unread", room_ids=[room]))["unread"] == {room: 0}
        await bob.send(room, "new")
        assert (await alice.request("unread", room_ids=[room]))["unread"] == {room: 1}
        state.update(alice=alice.pseudonym, room=room)
        await _close(alice, bob)

    run(before())
    server.restart()

    async def after():
        alice = await SharonClient.connect(server.ws_url)
        await alice.login(state["alice"], PASSWORD)
        assert (await alice.request("unread", room_ids=[state["room"]]))["unread"] == {state["room"]: 1}
        await alice.close()

    run(after())


try:  # pytest puts tests/ on sys.path while tests/ is not a package
    from storage_backends import backend  # noqa: F401 - fixture
except ImportError:  # tests/ became a package
    from tests.storage_backends import backend  # noqa: F401


def test_read_markers_are_stored_in_batches_and_never_move_back(backend):
    """A join storm's markers go to the database in a few batched transactions (one per
    join cost the reactor ~5 ms each and held up the room's next messages), with one
    conditional upsert on SQLite and PostgreSQL: whichever order a join's marker and a
    later ``mark_read`` reach the database in, the stored marker is the furthest."""
    import sqlalchemy as sa

    from sharon_server.features.dms_presence import ReadState, TypingTracker
    from sharon_server.storage.schema_dms import read_markers

    class _Hub:
        delivered_pos = 40
        user_conns: dict = {}
        room_subs: dict = {}

    async def go():
        db = await backend.open()
        await db.migrate()
        hub = _Hub()
        reads = ReadState(None, db, hub, lambda: 1, TypingTracker(hub, lambda u: u, ttl_s=5.0))
        stored = []
        store = reads._store_entries

        async def counted(batch):
            stored.append(len(batch))
            await store(batch)
        reads._store_entries = counted
        for i in range(300):  # a storm: no transaction per join
            reads.on_entry(f"@m{i}:x", "!big:x", None)
        # a later explicit mark on one of them, stored before or after its join marker
        assert await reads.mark("@m7:x", "!big:x", None, origin=None) == 40
        hub.delivered_pos = 90
        assert await reads.mark("@m8:x", "!big:x", 75, origin=None) == 75
        while reads._entries_flush is not None:
            await reads._entries_flush
        assert sorted(stored) == [1, 300]  # the storm in one batch; the mark that moved stored alone
        await reads._store_entries({("@m8:x", "!big:x"): 40})  # an older marker arriving late
        async with db.engine.connect() as conn:
            rows = dict((r[0], r[1]) for r in await conn.execute(
                sa.select(read_markers.c.user_id, read_markers.c.pos)))
        assert len(rows) == 300 and rows["@m8:x"] == 75 and rows["@m0:x"] == 40
        assert reads.memory_report()["read_markers_unstored"] == 0

    backend.run(go())
