"""Staff in any room (#5): observe without a membership, visible staff joins, the moderation
notice, member cards, the audit trail of each, and every role boundary, on one real server."""

from __future__ import annotations

import json

import pytest

from protocol.errors import BadField, Forbidden, MissingField, NotFound, NotInRoom, UnknownOp
from protocol.staff import NOTICE
from tests.conftest import module_server
from tests.helpers import all_history, messages_until, user
from tests.staff_helpers import (
    contains_any, grant_admin, in_world, make_identity, put_identity, service_with_staff, values_of,
)

pytestmark = pytest.mark.integration


shared = module_server("staff")


async def _world(server):
    """An admin, two services, members, and staff of each role."""
    admin = await user(server, "keeper")
    grant_admin(server, admin.pseudonym)
    alice, bob, peer = await user(server, "alice"), await user(server, "bob"), await user(server, "robin")
    mod, clin = await user(server, "owl"), await user(server, "heron")
    other_mod, other_clin = await user(server, "finch"), await user(server, "wren")
    service = await service_with_staff(admin, "Perinatal", members=(alice, bob),
                                       roles={"peer": (peer,), "moderator": (mod,), "clinician": (clin,)})
    other = await service_with_staff(admin, "Eating disorders",
                                     roles={"moderator": (other_mod,), "clinician": (other_clin,)})
    return dict(admin=admin, alice=alice, bob=bob, peer=peer, mod=mod, clin=clin,
                other_mod=other_mod, other_clin=other_clin, service=service, other=other)


def _in_world(run, body, *world_args, **world_kw):
    in_world(run, _world, body, *world_args, **world_kw)


async def _audit(admin, action, **filters):
    return (await admin.request("audit_query", action=action, limit=50, **filters))["entries"]


def test_observe_without_membership_live_history_and_audit(shared, run):
    async def scenario(w):
        alice, bob, mod, admin = w["alice"], w["bob"], w["mod"], w["admin"]
        room = (await alice.request("create_room", kind="chat", name="Night feeds", public=False,
                                    service_id=w["service"]))["room_id"]
        await alice.invite(room, bob.user_id)
        await bob.join(room)
        before = {r["room_id"]: r["members"] for r in await alice.rooms()}[room]

        observed = await mod.request("moderate_join", room_id=room)
        assert observed["visible"] is False and observed["role"] == "moderator"
        assert "moderated by the Perinatal team" in observed["notice"]
        assert mod.pseudonym not in observed["notice"]
        await mod.sync()
        await alice.send(room, "is anyone awake")
        [live] = await messages_until(mod, 1)
        assert live["room_id"] == room and live["content"]["body"] == "is anyone awake"
        history = await all_history(mod, room)
        assert any(e["type"] == "m.room.message" for e in history)
        # nobody sees the observer: no membership event, the same member count
        assert not any(e["type"] == "m.room.member" and e["state_key"] == mod.user_id for e in history)
        assert {r["room_id"]: r["members"] for r in await alice.rooms()}[room] == before
        listed = (await mod.request("moderating"))["rooms"]
        assert [(r["room_id"], r["visible"], r["service_id"]) for r in listed] == [(room, False, w["service"])]
        [entry] = await _audit(admin, "staff.observe", actor=mod.user_id)
        assert entry["service"] == w["service"] and entry["details"]["room_id"] == room

        # a new connection of the observer is live in the room too
        from clients.client import SharonClient
        from tests.helpers import PASSWORD
        second = await SharonClient.connect(shared.ws_url)
        await second.login(mod.pseudonym, PASSWORD)
        await second.sync()
        await bob.send(room, "me")
        assert (await messages_until(second, 1))[0]["content"]["body"] == "me"

        await mod.request("moderate_leave", room_id=room)
        with pytest.raises(NotInRoom):
            await mod.history(room)
        assert (await mod.request("moderating"))["rooms"] == []
        assert len(await _audit(admin, "staff.leave", actor=mod.user_id)) == 1
        with pytest.raises(NotFound):
            await mod.request("moderate_leave", room_id=room)
        await second.close()

    _in_world(run, scenario, shared)


def test_visible_join_of_a_dm_shows_a_staff_badge(shared, run):
    async def scenario(w):
        alice, bob, clin, admin = w["alice"], w["bob"], w["clin"], w["admin"]
        dm = (await alice.request("create_dm", user_id=bob.user_id))["room_id"]
        await alice.sync()
        joined = await clin.request("moderate_join", room_id=dm, visible=True)
        assert joined["visible"] is True and joined["role"] == "clinician"
        while True:
            event = await alice.next_event()
            if event["type"] == "m.room.member" and event["state_key"] == clin.user_id \
                    and event["content"]["membership"] == "join":
                break
        assert event["content"]["staff"] == {"role": "clinician"}
        assert event["content"]["pseudonym"] == clin.pseudonym
        await clin.send(dm, "hello from the team")
        assert (await messages_until(alice, 1))[0]["sender"] == clin.user_id
        assert len(await _audit(admin, "staff.join", actor=clin.user_id)) == 1
        await clin.request("moderate_leave", room_id=dm)
        assert dm not in {r["room_id"] for r in await clin.rooms()}

    _in_world(run, scenario, shared)


def test_who_may_moderate_which_room(shared, run):
    async def scenario(w):
        alice, bob, admin = w["alice"], w["bob"], w["admin"]
        room = (await alice.request("create_room", kind="chat", name="Service room", public=True,
                                    service_id=w["service"]))["room_id"]
        dm = (await alice.request("create_dm", user_id=bob.user_id))["room_id"]
        outside = (await alice.create_room("chat", "No service", public=False))["room_id"]
        for who in ("alice", "bob", "peer", "other_mod", "other_clin"):
            for target in (room, dm):
                with pytest.raises(Forbidden):
                    await w[who].request("moderate_join", room_id=target)
                with pytest.raises(Forbidden):
                    await w[who].request("member_card", room_id=target, user_id=alice.user_id)
        # a room outside every service: server admins only
        with pytest.raises(Forbidden):
            await w["mod"].request("moderate_join", room_id=outside)
        assert (await admin.request("moderate_join", room_id=outside))["role"] == "admin"
        await admin.history(outside)
        # staff of the service, every staff role
        for who in ("mod", "clin"):
            assert (await w[who].request("moderate_join", room_id=room))["visible"] is False
        # the audit log is for server admins only
        for who in ("alice", "mod", "clin"):
            with pytest.raises(Forbidden):
                await w[who].request("audit_query")
        # bad input names the field
        with pytest.raises(MissingField) as exc:
            await w["mod"].request("moderate_join")
        assert exc.value.field == "room_id"
        with pytest.raises(MissingField) as exc:
            await w["mod"].request("member_card", user_id=alice.user_id)
        assert exc.value.field == "room_id"
        with pytest.raises(BadField) as exc:
            await admin.request("audit_query", limit=0)
        assert exc.value.field == "limit"

    _in_world(run, scenario, shared)


def test_every_service_room_and_dm_carries_the_moderation_notice(shared, run):
    async def scenario(w):
        alice, bob, mod = w["alice"], w["bob"], w["mod"]
        await mod.request("moderate_join", room_id=w["service"])
        for kind in ("chat", "forum"):
            room = (await alice.request("create_room", kind=kind, name="Room", public=True,
                                        service_id=w["service"]))["room_id"]
            notices = [e for e in await all_history(alice, room) if e["type"] == NOTICE]
            assert len(notices) == 1 and notices[0]["state_key"] == ""
            text = notices[0]["content"]["notice"]
            assert "Perinatal" in text and mod.pseudonym not in text and mod.user_id not in text
        dm = (await alice.request("create_dm", user_id=bob.user_id))["room_id"]
        assert [e for e in await all_history(bob, dm) if e["type"] == NOTICE]
        outside = (await alice.create_room("chat", "No service", public=True))["room_id"]
        assert not [e for e in await all_history(alice, outside) if e["type"] == NOTICE]
        # no op lets a client send it (only the server sets it)
        with pytest.raises(UnknownOp):
            await alice.request("send_event", room_id=dm, type=NOTICE, state_key="", content={"notice": "x"})

    _in_world(run, scenario, shared)


def test_member_cards_carry_no_identity(shared, run):
    async def scenario(w):
        alice, mod, clin = w["alice"], w["mod"], w["clin"]
        identity = make_identity(101)
        await put_identity(shared, alice.user_id, identity)
        card = await mod.request("member_card", service_id=w["service"], user_id=alice.user_id)
        assert card["user_id"] == alice.user_id and card["pseudonym"] == alice.pseudonym
        assert card["role"] == "member" and card["service_id"] == w["service"]
        assert card["account_age_days"] == 0 and card["has_identity"] is True
        assert card["membership"] == "join" and type(card["joined_ts"]) is int
        assert contains_any(card, values_of(identity)) == []
        # sections from the risk and moderation features are merged in
        assert card["recent_flags"] == [] and card["sanctions"] == []
        room = (await alice.request("create_room", kind="chat", name="R", public=True,
                                    service_id=w["service"]))["room_id"]
        by_room = await clin.request("member_card", room_id=room, user_id=alice.user_id)
        assert by_room["room_id"] == room and by_room["role"] == "member"
        with pytest.raises(NotFound) as exc:
            await mod.request("member_card", service_id=w["service"], user_id=w["other_mod"].user_id)
        assert exc.value.field == "user_id"
        entries = await _audit(w["admin"], "staff.card", member=alice.user_id)
        assert {e["actor"] for e in entries} == {mod.user_id, clin.user_id}

    _in_world(run, scenario, shared)


def test_cli_moderates_cards_unmasks_and_reads_the_audit(shared, run, tmp_path):
    from tests.test_cli import Stream, User
    from clients.client import SharonClient
    from tests.helpers import PASSWORD

    keeper = User(shared, tmp_path / "keeper", "keeper").register()
    owl = User(shared, tmp_path / "owl", "owl").register()
    heron = User(shared, tmp_path / "heron", "heron").register()
    alice = User(shared, tmp_path / "alice", "alice").register()
    grant_admin(shared, keeper.pseudonym)
    identity = make_identity(202)

    async def setup():
        admin = await SharonClient.connect(shared.ws_url)
        await admin.login(keeper.pseudonym, PASSWORD)
        service = (await admin.request("create_service", name="Bereavement"))["service_id"]
        await admin.request("service_add_member", service_id=service, user_id=alice.user_id)
        await admin.request("service_add_member", service_id=service, user_id=owl.user_id, role="moderator")
        await admin.request("service_add_member", service_id=service, user_id=heron.user_id, role="clinician")
        await admin.close()
        await put_identity(shared, alice.user_id, identity)
        return service

    service = run(setup())
    room = alice.ok("create-room", "Evenings", "--kind", "chat", "--service", service).strip()
    assert "moderated by the Bereavement team" in alice.ok("notice", room)
    tail = Stream(alice, "tail", room)
    try:
        assert "moderated by the Bereavement team" in tail.wait_err("moderated by")
    finally:
        tail.kill()
    result = owl.run("mod", "join", room)
    assert result.returncode == 0 and "observing as moderator" in result.stdout
    assert "moderated by" in result.stderr
    assert room in owl.ok("mod", "list")
    card = owl.ok("mod", "card", "--service", service, alice.user_id, "--json")
    assert json.loads(card)["role"] == "member" and contains_any(card, values_of(identity)) == []
    refused = alice.run("mod", "join", room)
    assert refused.returncode == 1 and "forbidden" in refused.stderr

    asked = json.loads(owl.ok("unmask", "request", service, alice.user_id, "--reason-code", "safeguarding",
                              "--reason", "threat to self", "--json"))
    assert asked["status"] == "pending"
    assert "unmask_self_approval" in owl.run("unmask", "approve", asked["request_id"]).stderr
    assert "approved" in heron.ok("unmask", "approve", asked["request_id"])
    assert asked["request_id"] in heron.ok("unmask", "list", service, "--status", "approved")
    viewed = owl.run("unmask", "view", asked["request_id"])
    assert viewed.returncode == 0 and identity["name"] in viewed.stdout and "audit log" in viewed.stderr
    audit = keeper.ok("audit", "--action", "unmask.view", "--json")
    [entry] = [json.loads(line) for line in audit.splitlines()]
    assert entry["actor"] == owl.user_id and entry["member"] == alice.user_id
    assert "forbidden" in owl.run("audit").stderr
    assert owl.ok("mod", "leave", room).strip() == room


def test_start_up_adds_the_notice_to_rooms_that_lack_it(server_factory, run):
    server = server_factory(env={"SHARON_FEATURES": "spaces,dms"})

    async def before():
        admin, alice = await user(server, "keeper"), await user(server, "alice")
        grant_admin(server, admin.pseudonym)
        service = await service_with_staff(admin, "Perinatal", members=(alice,))
        room = (await alice.request("create_room", kind="chat", name="Old", public=True,
                                    service_id=service))["room_id"]
        assert not [e for e in await all_history(alice, room) if e["type"] == NOTICE]
        await admin.close()
        return alice.pseudonym, room

    def with_server_failures(coro):
        try:
            return run(coro, timeout_s=60)
        except Exception as exc:  # say which handler failed: the server log has the traceback
            failures = [r for r in server.logs if r.get("event") in ("ws.handler_failed", "staff.notice_failed")]
            raise AssertionError(f"{exc!r}; server failures: {failures[-3:]}") from exc

    pseudonym, room = with_server_failures(before())
    server.extra_env = {}
    server.restart()

    async def after():
        from clients.client import SharonClient
        from tests.helpers import PASSWORD
        alice = await SharonClient.connect(server.ws_url)
        await alice.login(pseudonym, PASSWORD)
        notices = [e for e in await all_history(alice, room) if e["type"] == NOTICE]
        assert len(notices) == 1 and "Perinatal" in notices[0]["content"]["notice"]
        assert [r.get("moderation_notice") for r in await alice.rooms() if r["room_id"] == room] == \
            [notices[0]["content"]["notice"]]
        await alice.close()
        server.restart()  # idempotent: no second notice
        alice = await SharonClient.connect(server.ws_url)
        await alice.login(pseudonym, PASSWORD)
        assert len([e for e in await all_history(alice, room) if e["type"] == NOTICE]) == 1
        await alice.close()

    with_server_failures(after())


def test_losing_the_staff_role_ends_an_observation(shared, run):
    async def scenario(w):
        import asyncio
        alice, mod, admin = w["alice"], w["mod"], w["admin"]
        room = (await alice.request("create_room", kind="chat", name="R", public=True,
                                    service_id=w["service"]))["room_id"]
        await mod.request("moderate_join", room_id=room)
        await mod.sync()
        await alice.send(room, "one")
        assert (await messages_until(mod, 1))[0]["content"]["body"] == "one"
        await admin.request("service_add_member", service_id=w["service"], user_id=mod.user_id, role="member")
        await alice.send(room, "two")
        await mod.ping()  # pushes are written before later replies: none may be queued after it
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            while True:
                event = await mod.next_event(timeout_s=0.3)
                assert event["type"] != "m.room.message", "a former moderator still receives the room"
        with pytest.raises(NotInRoom):
            await mod.history(room)
        assert (await mod.request("moderating"))["rooms"][0]["entitled"] is False
        with pytest.raises(Forbidden):
            await mod.request("moderate_join", room_id=room)

    _in_world(run, scenario, shared)


def test_an_observer_resumes_without_a_gap(shared, run):
    async def scenario(w):
        from clients.client import SharonClient
        from tests.helpers import PASSWORD
        alice, mod = w["alice"], w["mod"]
        room = (await alice.request("create_room", kind="chat", name="R", public=False,
                                    service_id=w["service"]))["room_id"]
        await mod.request("moderate_join", room_id=room)
        since = (await mod.sync())["pos"]
        await mod.close()
        await alice.send(room, "while the moderator was away")
        back = await SharonClient.connect(shared.ws_url)
        await back.login(mod.pseudonym, PASSWORD)
        await back.sync(since=since)
        [missed] = await messages_until(back, 1)
        assert missed["content"]["body"] == "while the moderator was away" and missed["room_id"] == room
        await back.close()

    _in_world(run, scenario, shared)


def test_the_chat_room_list_keeps_the_notice():
    from clients.cli.chat_widgets import RoomInfo
    info = RoomInfo.from_summary({"room_id": "!r", "name": "R", "kind": "chat", "membership": "join",
                                  "moderation_notice": "This space is moderated by the X team."})
    assert info.notice == "This space is moderated by the X team."
    assert RoomInfo.from_summary({"room_id": "!r", "kind": "chat", "membership": "join"}).notice is None


def test_staff_of_a_service_moderate_its_own_room(shared, run):
    """A service's own room (kind ``space``) belongs to that service for moderation as it does
    for observing: its moderator may hide a post there and sees it with notes; peers get the
    placeholder; a moderator of another service is refused."""
    async def scenario(w):
        alice, bob, mod, other_mod = w["alice"], w["bob"], w["mod"], w["other_mod"]
        service = w["service"]
        post = await alice.send(service, "my name is on this post")
        with pytest.raises(Forbidden):
            await other_mod.request("mod_hide", event_id=post["event_id"], rule="be-kind", reason="x")
        got = await mod.request("mod_hide", event_id=post["event_id"], rule="be-kind", reason="identifying")
        assert got["hidden"] is True

        def the_post(events):
            return next(e for e in events if e["event_id"] == post["event_id"])

        seen = the_post(await all_history(mod, service))
        assert seen["content"]["body"] == "my name is on this post"
        assert seen["moderation"]["hidden"] is True and seen["moderation"]["reason"] == "identifying"
        peer_view = the_post(await all_history(bob, service))
        assert peer_view["content"]["body"] != "my name is on this post"
        assert peer_view["moderation"] == {"hidden": True, "redacted": False}
        # an observing moderator of the service room gets the same staff view
        await mod.request("moderate_join", room_id=service)
        assert the_post(await all_history(mod, service))["content"]["body"] == "my name is on this post"

    _in_world(run, scenario, shared)


async def _no_more_messages(client, why):
    """Nothing but non-message events is queued for ``client`` (a ping orders the pushes)."""
    import asyncio
    await client.ping()  # pushes are written before later replies: none may be queued after it
    with pytest.raises((TimeoutError, asyncio.TimeoutError)):
        while True:
            event = await client.next_event(timeout_s=0.3)
            assert event["type"] != "m.room.message", why


def test_leaving_the_service_ends_an_observation_at_once(shared, run):
    """A staff member who leaves the service stops receiving the rooms they observe on the
    live connection at once, as when the role is taken away; a server admin does not."""
    async def scenario(w):
        alice, mod, clin, admin = w["alice"], w["mod"], w["clin"], w["admin"]
        room = (await alice.request("create_room", kind="chat", name="R", public=True,
                                    service_id=w["service"]))["room_id"]
        for staff in (mod, clin):
            await staff.request("moderate_join", room_id=room)
            await staff.request("moderate_join", room_id=w["service"])
            await staff.sync()
        await alice.send(room, "one")
        for staff in (mod, clin):
            assert (await messages_until(staff, 1))[0]["content"]["body"] == "one"
        await mod.leave(w["service"])
        await alice.send(room, "two")
        assert (await messages_until(clin, 1))[0]["content"]["body"] == "two"  # still staff
        await _no_more_messages(mod, "a moderator who left the service still receives its room")
        with pytest.raises(NotInRoom):
            await mod.history(room)
        entitled = {r["room_id"]: r["entitled"] for r in (await mod.request("moderating"))["rooms"]}
        assert entitled == {room: False, w["service"]: False}
        # a server admin who is also in the service keeps observing after leaving it
        await admin.request("moderate_join", room_id=room)
        await admin.sync()
        await admin.leave(w["service"])
        await alice.send(room, "three")
        assert "three" in [e["content"]["body"] for e in await messages_until(admin, 1)]

    _in_world(run, scenario, shared)
