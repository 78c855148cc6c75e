"""Unmasking (#5): reason codes, a second approver, self-approval refused, views only by the
requester and only before the TTL, every step in the audit log, every role boundary."""

from __future__ import annotations

import pytest

from protocol.errors import (
    BadField, Forbidden, NoIdentity, NotFound, UnmaskDecided, UnmaskExpired, UnmaskNotApproved,
    UnmaskSelfApproval, UnmaskTooManyOpen,
)
from protocol.identity import Identity
from tests.conftest import module_server
from tests.helpers import user
from tests.staff_helpers import (
    close_world, contains_any, grant_admin, in_world, make_identity, put_identity, service_with_staff, values_of,
)

pytestmark = pytest.mark.integration


shared = module_server("unmask")


async def _world(server, settings=None, seed=1):
    admin = await user(server, "keeper")
    grant_admin(server, admin.pseudonym)
    alice, bob, peer = await user(server, "alice"), await user(server, "bob"), await user(server, "robin")
    mod, clin, other_clin = await user(server, "owl"), await user(server, "heron"), await user(server, "wren")
    service = await service_with_staff(admin, "Perinatal", members=(alice, bob), settings=settings,
                                       roles={"peer": (peer,), "moderator": (mod,), "clinician": (clin,)})
    other = await service_with_staff(admin, "Psychosis", roles={"clinician": (other_clin,)})
    identity = make_identity(seed)
    await put_identity(server, alice.user_id, identity)
    return dict(admin=admin, alice=alice, bob=bob, peer=peer, mod=mod, clin=clin, other_clin=other_clin,
                service=service, other=other, identity=identity)


def _in_world(run, body, *world_args, **world_kw):
    in_world(run, _world, body, *world_args, **world_kw)


async def _actions(admin, request_id):
    """The audit entries of one request, oldest first, as (action, actor)."""
    entries = (await admin.request("audit_query", limit=100))["entries"]
    return [(e["action"], e["actor"]) for e in reversed(entries)
            if e["details"].get("request_id") == request_id]


async def _push(client, op):
    while True:
        frame = await client.next_frame()
        if frame.get("op") == op:
            return frame


def test_a_second_approver_releases_the_identity_to_the_requester_only(shared, run):
    async def scenario(w):
        mod, clin, alice, admin = w["mod"], w["clin"], w["alice"], w["admin"]
        await clin.sync()
        await mod.sync()
        asked = await mod.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                                  reason_code="safeguarding", reason="disclosed plans tonight")
        assert asked["status"] == "pending" and asked["pseudonym"] == alice.pseudonym
        rid = asked["request_id"]
        pending = await _push(clin, "unmask_pending")
        assert pending["request"]["request_id"] == rid and contains_any(pending, values_of(w["identity"])) == []

        # a moderator without a second approver sees nothing, and cannot approve their own request
        with pytest.raises(UnmaskNotApproved):
            await mod.request("unmask_view", request_id=rid)
        with pytest.raises(UnmaskSelfApproval):
            await mod.request("unmask_approve", request_id=rid)
        listed = (await clin.request("unmask_requests", service_id=w["service"], status="pending"))["requests"]
        assert [r["request_id"] for r in listed] == [rid]

        approved = await clin.request("unmask_approve", request_id=rid)
        assert approved["status"] == "approved" and approved["decided_by"] == clin.user_id
        assert approved["expires_ts"] > approved["decided_ts"]
        decided = await _push(mod, "unmask_decided")
        assert decided["request"]["status"] == "approved"
        with pytest.raises(UnmaskDecided):
            await clin.request("unmask_approve", request_id=rid)
        with pytest.raises(UnmaskDecided):
            await clin.request("unmask_refuse", request_id=rid, reason="changed my mind")
        # only the requester views it
        for other in (clin, admin, alice):
            with pytest.raises(Forbidden):
                await other.request("unmask_view", request_id=rid)
        seen = await mod.request("unmask_view", request_id=rid)
        assert Identity.parse(seen["identity"]) == Identity.parse(w["identity"])
        assert seen["user_id"] == alice.user_id
        await mod.request("unmask_view", request_id=rid)
        assert await _actions(admin, rid) == [
            ("unmask.request", mod.user_id), ("unmask.approve", clin.user_id),
            ("unmask.view", mod.user_id), ("unmask.view", mod.user_id)]
        # the audit trail itself holds no identity
        trail = (await admin.request("audit_query", member=alice.user_id, limit=100))["entries"]
        assert trail and contains_any(trail, values_of(w["identity"])) == []

    _in_world(run, scenario, shared, seed=11)


def test_a_refused_request_never_shows_the_identity(shared, run):
    async def scenario(w):
        mod, clin, alice, admin = w["mod"], w["clin"], w["alice"], w["admin"]
        rid = (await clin.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                                  reason_code="clinical_review", reason="review"))["request_id"]
        refused = await mod.request("unmask_refuse", request_id=rid, reason="not enough grounds")
        assert refused["status"] == "refused" and refused["decision_reason"] == "not enough grounds"
        with pytest.raises(UnmaskNotApproved):
            await clin.request("unmask_view", request_id=rid)
        assert await _actions(admin, rid) == [("unmask.request", clin.user_id), ("unmask.refuse", mod.user_id)]

    _in_world(run, scenario, shared, seed=12)


def test_role_boundaries_and_bad_input(shared, run):
    async def scenario(w):
        mod, clin, alice, bob = w["mod"], w["clin"], w["alice"], w["bob"]
        ask = dict(service_id=w["service"], user_id=alice.user_id, reason_code="risk_to_life", reason="r")
        for who in ("alice", "bob", "peer", "other_clin"):  # members, peers, a clinician of another service
            with pytest.raises(Forbidden):
                await w[who].request("unmask_request", **ask)
            with pytest.raises(Forbidden):
                await w[who].request("unmask_requests", service_id=w["service"])
        rid = (await mod.request("unmask_request", **ask))["request_id"]
        with pytest.raises(Forbidden):  # a clinician of another service cannot approve it either
            await w["other_clin"].request("unmask_approve", request_id=rid)
        with pytest.raises(BadField) as exc:
            await mod.request("unmask_request", **dict(ask, reason_code="curiosity"))
        assert exc.value.field == "reason_code"
        with pytest.raises(NoIdentity) as exc:  # a member with no identity in the vault
            await mod.request("unmask_request", **dict(ask, user_id=bob.user_id))
        assert exc.value.field == "user_id"
        with pytest.raises(NotFound) as exc:  # not a member of this service
            await mod.request("unmask_request", **dict(ask, user_id=w["other_clin"].user_id))
        assert exc.value.field == "user_id"
        with pytest.raises(NotFound) as exc:
            await clin.request("unmask_approve", request_id="um_nope")
        assert exc.value.field == "request_id"
        with pytest.raises(BadField) as exc:
            await mod.request("unmask_requests", service_id=w["service"], status="maybe")
        assert exc.value.field == "status"
        await mod.ping()  # still serving

    _in_world(run, scenario, shared, seed=13)


def test_without_a_second_approver_the_request_is_approved_at_once(shared, run):
    async def scenario(w):
        mod, alice, admin = w["mod"], w["alice"], w["admin"]
        asked = await mod.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                                  reason_code="police_request", reason="warrant 123")
        assert asked["status"] == "approved" and asked["decided_by"] == mod.user_id
        seen = await mod.request("unmask_view", request_id=asked["request_id"])
        assert Identity.parse(seen["identity"]) == Identity.parse(w["identity"])
        assert await _actions(admin, asked["request_id"]) == [
            ("unmask.request", mod.user_id), ("unmask.approve", mod.user_id), ("unmask.view", mod.user_id)]
        with pytest.raises(BadField) as exc:
            await admin.request("service_settings", service_id=w["service"],
                                settings={"unmask_requires_second_approver": "no"})
        assert exc.value.field == "settings.unmask_requires_second_approver"

    _in_world(run, scenario, shared, settings={"unmask_requires_second_approver": False}, seed=14)


def test_an_expired_unmask_is_refused_and_audited(server_factory, run):
    server = server_factory(env={"SHARON_UNMASK_TTL_MS": "1"})

    async def scenario(w):
        mod, clin, alice, admin = w["mod"], w["clin"], w["alice"], w["admin"]
        rid = (await mod.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                                 reason_code="safeguarding", reason="r"))["request_id"]
        approved = await clin.request("unmask_approve", request_id=rid)
        assert approved["expires_ts"] == approved["decided_ts"] + 1
        # wait on the server's own clock: event timestamps come from the same clock
        room = (await mod.request("create_room", kind="chat", name="clock", public=False,
                                  service_id=w["service"]))["room_id"]
        while True:
            sent = await mod.send(room, "tick")
            page = await mod.history(room, limit=1)
            assert page["events"][0]["event_id"] == sent["event_id"]
            if page["events"][0]["origin_server_ts"] >= approved["expires_ts"]:
                break
        with pytest.raises(UnmaskExpired):
            await mod.request("unmask_view", request_id=rid)
        with pytest.raises(UnmaskExpired):
            await mod.request("unmask_view", request_id=rid)
        listed = (await mod.request("unmask_requests", service_id=w["service"], status="expired"))["requests"]
        assert [r["request_id"] for r in listed] == [rid]
        assert await _actions(admin, rid) == [
            ("unmask.request", mod.user_id), ("unmask.approve", clin.user_id), ("unmask.expired", mod.user_id)]

    _in_world(run, scenario, server, seed=15)


def test_observation_and_unmask_on_postgresql_survive_a_restart(pg_server, run):
    from clients.client import SharonClient
    from tests.helpers import PASSWORD
    from tests.staff_helpers import invited_member

    async def before():
        admin = await user(pg_server, "keeper")
        grant_admin(pg_server, admin.pseudonym)
        mod, clin = await user(pg_server, "owl"), await user(pg_server, "heron")
        service = await service_with_staff(admin, "Perinatal", roles={"moderator": (mod,), "clinician": (clin,)})
        identity = make_identity(31)
        member = await invited_member(pg_server, clin, service, identity)
        room = (await member.request("create_room", kind="chat", name="R", public=False,
                                     service_id=service))["room_id"]
        await member.send(room, "before the restart")
        await mod.request("moderate_join", room_id=room)
        rid = (await mod.request("unmask_request", service_id=service, user_id=member.user_id,
                                 reason_code="clinical_review", reason="r"))["request_id"]
        await clin.request("unmask_approve", request_id=rid)
        for c in (admin, mod, clin, member):
            await c.close()
        return admin.pseudonym, mod.pseudonym, service, room, rid, member.user_id, identity

    admin_name, mod_name, service, room, rid, member_id, identity = run(before(), timeout_s=60)
    pg_server.restart()

    async def after():
        mod = await SharonClient.connect(pg_server.ws_url)
        await mod.login(mod_name, PASSWORD)
        assert [r["room_id"] for r in (await mod.request("moderating"))["rooms"]] == [room]
        assert any(e.get("content", {}).get("body") == "before the restart" for e in (await mod.history(room))["events"])
        listed = (await mod.request("unmask_requests", service_id=service, status="approved"))["requests"]
        assert [r["request_id"] for r in listed] == [rid]
        seen = await mod.request("unmask_view", request_id=rid)
        assert seen["user_id"] == member_id and Identity.parse(seen["identity"]) == Identity.parse(identity)
        admin = await SharonClient.connect(pg_server.ws_url)
        await admin.login(admin_name, PASSWORD)
        actions = [e["action"] for e in (await admin.request("audit_query", member=member_id))["entries"]]
        assert actions[:3] == ["unmask.view", "unmask.approve", "unmask.request"]
        await mod.close()
        await admin.close()

    run(after(), timeout_s=60)


def test_audit_query_pages_and_filters(shared, run):
    async def scenario(w):
        admin, mod, clin, alice = w["admin"], w["mod"], w["clin"], w["alice"]
        rid = (await mod.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                                 reason_code="safeguarding", reason="r"))["request_id"]
        approved = await clin.request("unmask_approve", request_id=rid)
        await mod.request("unmask_view", request_id=rid)
        everything = (await admin.request("audit_query", limit=1000))["entries"]
        seqs = [e["seq"] for e in everything]
        assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 5
        paged, before = [], None
        while True:
            page = await admin.request("audit_query", limit=2, **({"before": before} if before else {}))
            paged.extend(e["seq"] for e in page["entries"])
            before = page["next"]
            if before is None:
                break
        assert paged[:len(seqs)] == seqs
        mine = (await admin.request("audit_query", member=alice.user_id, action="unmask.approve"))["entries"]
        assert [(e["actor"], e["details"]["request_id"]) for e in mine] == [(clin.user_id, rid)]
        at = mine[0]["ts"]
        assert at >= approved["decided_ts"]
        window = (await admin.request("audit_query", actor=clin.user_id, since_ts=at, until_ts=at + 1))["entries"]
        assert [e["action"] for e in window] == ["unmask.approve"]
        assert (await admin.request("audit_query", actor=clin.user_id, since_ts=at + 1,
                                    until_ts=at + 1))["entries"] == []
        with pytest.raises(BadField) as exc:
            await admin.request("audit_query", since_ts=10, until_ts=5)
        assert exc.value.field == "until_ts"

    _in_world(run, scenario, shared, seed=16)


async def _wait_server_clock(client, room, ts):
    """Wait until the server's own clock reaches ``ts`` (event timestamps come from it)."""
    while True:
        sent = await client.send(room, "tick")
        page = await client.history(room, limit=1)
        assert page["events"][0]["event_id"] == sent["event_id"]
        if page["events"][0]["origin_server_ts"] >= ts:
            return


def test_open_requests_per_requester_are_capped(shared, run):
    from sharon_server.features.unmask import MAX_OPEN_PER_REQUESTER

    async def scenario(w):
        mod, clin, alice, bob = w["mod"], w["clin"], w["alice"], w["bob"]
        await put_identity(shared, bob.user_id, make_identity(22))
        rids = []
        for i in range(MAX_OPEN_PER_REQUESTER):
            rids.append((await mod.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                                           reason_code="safeguarding", reason=f"r{i}"))["request_id"])
        with pytest.raises(UnmaskTooManyOpen) as exc:
            await mod.request("unmask_request", service_id=w["service"], user_id=bob.user_id,
                              reason_code="safeguarding", reason="one more")
        assert exc.value.code == "unmask_too_many_open"
        # the cap is the requester's: another staff member may still ask
        other = await clin.request("unmask_request", service_id=w["service"], user_id=bob.user_id,
                                   reason_code="safeguarding", reason="clin")
        assert other["status"] == "pending"
        # an approved request stays open while viewable; a refused one frees a place
        await clin.request("unmask_approve", request_id=rids[0])
        with pytest.raises(UnmaskTooManyOpen):
            await mod.request("unmask_request", service_id=w["service"], user_id=bob.user_id,
                              reason_code="safeguarding", reason="still full")
        await clin.request("unmask_refuse", request_id=rids[1], reason="not needed")
        again = await mod.request("unmask_request", service_id=w["service"], user_id=bob.user_id,
                                  reason_code="safeguarding", reason="now there is room")
        assert again["status"] == "pending"

    _in_world(run, scenario, shared, seed=21)


def test_a_pending_request_expires_undecided_and_is_audited(shared, run):
    run(_pending_expiry(shared), timeout_s=60)


def test_pending_expiry_and_the_open_cap_on_postgresql(pg_server, run):
    run(_pending_expiry(pg_server, cap=True, world=_pg_world), timeout_s=60)


async def _pg_world(server, settings=None, seed=1):
    """``_world`` for any backend: the member's identity arrives with a clinician's invite."""
    from tests.staff_helpers import invited_member
    admin = await user(server, "keeper")
    grant_admin(server, admin.pseudonym)
    mod, clin = await user(server, "owl"), await user(server, "heron")
    service = await service_with_staff(admin, "Perinatal", settings=settings,
                                       roles={"moderator": (mod,), "clinician": (clin,)})
    alice = await invited_member(server, clin, service, make_identity(seed))
    return dict(admin=admin, alice=alice, mod=mod, clin=clin, service=service)


async def _pending_expiry(server, cap=False, world=_world):
    w = await world(server, settings={"unmask_pending_ttl_ms": 50}, seed=23)
    mod, clin, alice, admin = w["mod"], w["clin"], w["alice"], w["admin"]
    for bad in (0, "50", 7 * 24 * 3600 * 1000 + 1):
        with pytest.raises(BadField) as exc:
            await admin.request("create_service", name="Bad", settings={"unmask_pending_ttl_ms": bad})
        assert exc.value.field == "settings.unmask_pending_ttl_ms"
    first = await mod.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                              reason_code="safeguarding", reason="r1")
    second = await mod.request("unmask_request", service_id=w["service"], user_id=alice.user_id,
                               reason_code="safeguarding", reason="r2")
    assert first["decide_by_ts"] == first["created_ts"] + 50
    room = (await mod.request("create_room", kind="chat", name="clock", public=False,
                              service_id=w["service"]))["room_id"]
    await _wait_server_clock(mod, room, max(first["decide_by_ts"], second["decide_by_ts"]))
    # deciding a stale request: expired, never approved; audited once, by the server
    with pytest.raises(UnmaskExpired):
        await clin.request("unmask_approve", request_id=first["request_id"])
    with pytest.raises(UnmaskExpired):
        await clin.request("unmask_approve", request_id=first["request_id"])
    with pytest.raises(UnmaskExpired):
        await mod.request("unmask_view", request_id=first["request_id"])
    assert await _actions(admin, first["request_id"]) == [
        ("unmask.request", mod.user_id), ("unmask.expired", "server")]
    # nobody touched the second one: listing notices it, shows it expired, audits it
    assert (await clin.request("unmask_requests", service_id=w["service"], status="pending"))["requests"] == []
    listed = (await clin.request("unmask_requests", service_id=w["service"], status="expired"))["requests"]
    assert sorted(r["request_id"] for r in listed) == sorted([first["request_id"], second["request_id"]])
    assert all(r["status"] == "expired" and "decided_by" not in r for r in listed)
    assert await _actions(admin, second["request_id"]) == [
        ("unmask.request", mod.user_id), ("unmask.expired", "server")]
    if cap:  # the open cap on this backend (a service with the default pending window)
        from sharon_server.features.unmask import MAX_OPEN_PER_REQUESTER
        w2 = await world(server, seed=25)
        for i in range(MAX_OPEN_PER_REQUESTER):
            await w2["mod"].request("unmask_request", service_id=w2["service"], user_id=w2["alice"].user_id,
                                    reason_code="safeguarding", reason=f"c{i}")
        with pytest.raises(UnmaskTooManyOpen):
            await w2["mod"].request("unmask_request", service_id=w2["service"], user_id=w2["alice"].user_id,
                                    reason_code="safeguarding", reason="over")
        await close_world(w2)
    await close_world(w)
