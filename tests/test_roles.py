"""Roles map onto power levels, so the ps1 auth rules enforce staff-only actions (#5)."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from protocol import spaces as P
from protocol.errors import Forbidden
from rooms.auth import check
from rooms.kinds import POWER_LEVELS
from tests.conftest import module_server
from tests.helpers import user
from tests.room_helpers import Room
from tests.test_content_support import txn
from tests.test_invites import server_admin

pytestmark = pytest.mark.integration


rserver = module_server("roles")


async def levels_of(client: Any, room_id: str) -> Dict[str, Any]:
    """The room's current power-levels content, read from history by a joined member."""
    events = (await client.history(room_id, limit=100))["events"]
    pls = [e for e in events if e["type"] == POWER_LEVELS]
    assert pls, "the room has no power levels"
    return max(pls, key=lambda e: e["pos"])["content"]


async def world(server: Any) -> Dict[str, Any]:
    w: Dict[str, Any] = {"admin": await server_admin(server)}
    w["svc"] = (await w["admin"].request("create_service", name="Perinatal"))["service_id"]
    for name, role in (("clin", "clinician"), ("mod", "moderator"), ("peer", "peer"), ("member", "member"),
                       ("carer", "carer")):
        w[name] = await user(server, name)
        await w["admin"].request("service_add_member", service_id=w["svc"], user_id=w[name].user_id, role=role)
    return w


async def close(clients: List[Any]) -> None:
    for c in clients:
        await c.close()


def test_roles_are_listed_at_their_levels_and_staff_events_need_them(rserver, run):
    async def scenario():
        w = await world(rserver)
        ids = {k: w[k].user_id for k in ("admin", "clin", "mod", "peer", "member", "carer")}
        service_levels = await levels_of(w["member"], w["svc"])
        assert service_levels["users"] == {ids["admin"]: 100, ids["clin"]: 50, ids["mod"]: 60, ids["peer"]: 10}
        assert service_levels["events"]["ps.service.role"] == 50
        assert service_levels["events"]["ps.service.settings"] == 100
        forum = (await w["member"].request("create_room", kind="forum", name="Nights", public=True,
                                           service_id=w["svc"]))["room_id"]
        forum_levels = await levels_of(w["member"], forum)
        assert forum_levels["users"] == {ids["member"]: 100, ids["admin"]: 100, ids["clin"]: 50, ids["mod"]: 60,
                                         ids["peer"]: 10}
        assert forum_levels["events"]["ps.thread.state"] == 50
        # the auth rules, on the levels the server wrote: members cannot send staff events
        space = Room(creator=ids["admin"], kind="space",
                     members={ids[k]: "join" for k in ("clin", "mod", "peer", "member", "carer")})
        space.force(POWER_LEVELS, ids["admin"], service_levels, state_key="")
        for who in ("member", "carer", "peer"):
            denied = check(*space.ev(P.ROLE, ids[who], {"role": "admin"}, state_key=P.role_key(ids[who])))
            assert not denied.allowed and denied.errcode == "forbidden", who
            denied = check(*space.ev(P.SETTINGS, ids[who], {"trending": False}, state_key=""))
            assert not denied.allowed and denied.errcode == "forbidden"
        assert check(*space.ev(P.ROLE, ids["clin"], {"role": "member"}, state_key=P.role_key(ids["member"]))).allowed
        denied = check(*space.ev(P.SETTINGS, ids["mod"], {"trending": False}, state_key=""))
        assert not denied.allowed  # settings are for admins (100)
        room = Room(creator=ids["member"], kind="forum",
                    members={ids[k]: "join" for k in ("clin", "mod", "peer", "carer")})
        room.force(POWER_LEVELS, ids["member"], forum_levels, state_key="")
        for who in ("carer", "peer"):
            denied = check(*room.ev("ps.thread.state", ids[who], {"pinned": True}, state_key="$t"))
            assert not denied.allowed and denied.errcode == "forbidden"
            kick = check(*room.member(ids[who], ids["carer" if who == "peer" else "peer"], "leave"))
            assert not kick.allowed
        assert check(*room.ev("ps.thread.state", ids["mod"], {"pinned": True}, state_key="$t")).allowed
        assert check(*room.member(ids["mod"], ids["peer"], "leave")).allowed
        # and a member's forum still refuses them through the feature check
        await w["carer"].join(forum)
        thread = await w["carer"].request("thread_create", room_id=forum, txn_id=txn(), title="t", body="b")
        for who in ("carer", "member"):
            with pytest.raises(Forbidden):
                await w[who].request("thread_state", room_id=forum, thread_id=thread["event_id"], pinned=True)
        await close([w[k] for k in ids])

    run(scenario())


def test_role_changes_resync_every_room_and_staff_act_as_themselves(rserver, run):
    async def scenario():
        w = await world(rserver)
        svc = w["svc"]
        chat = (await w["member"].request("create_room", kind="chat", name="Chat", public=True,
                                          service_id=svc))["room_id"]
        forum = (await w["member"].request("create_room", kind="forum", name="Forum", public=True,
                                           service_id=svc))["room_id"]
        late = await user(rserver, "late")
        await w["admin"].request("service_add_member", service_id=svc, user_id=late.user_id, role="moderator")
        for room in (svc, chat, forum):
            assert (await levels_of(w["member"], room))["users"][late.user_id] == 60
        # the late moderator can pin in a forum made before they were staff
        await late.join(forum)
        thread = await w["member"].request("thread_create", room_id=forum, txn_id=txn(), title="t", body="b")
        pinned = await late.request("thread_state", room_id=forum, thread_id=thread["event_id"], pinned=True)
        assert pinned["pinned"] is True
        # demotion removes the level everywhere
        await w["admin"].request("service_add_member", service_id=svc, user_id=w["peer"].user_id, role="member")
        for room in (svc, chat, forum):
            assert w["peer"].user_id not in (await levels_of(w["member"], room))["users"]
        # a clinician adds a member: the role event is theirs, not the service creator's
        newbie = await user(rserver, "newbie")
        added = await w["clin"].request("service_add_member", service_id=svc, user_id=newbie.user_id)
        events = (await w["member"].history(svc, limit=100))["events"]
        role_event = next(e for e in events if e["event_id"] == added["event_id"])
        assert role_event["sender"] == w["clin"].user_id and role_event["type"] == P.ROLE
        # clinicians cannot appoint staff, nor change a staff member's role
        with pytest.raises(Forbidden):
            await w["clin"].request("service_add_member", service_id=svc, user_id=newbie.user_id, role="moderator")
        with pytest.raises(Forbidden):
            await w["clin"].request("service_add_member", service_id=svc, user_id=late.user_id, role="member")
        # a clinician of another service cannot add members here
        other = (await w["admin"].request("create_service", name="Other"))["service_id"]
        oclin = await user(rserver, "oclin")
        await w["admin"].request("service_add_member", service_id=other, user_id=oclin.user_id, role="clinician")
        with pytest.raises(Forbidden):
            await oclin.request("service_add_member", service_id=svc, user_id=newbie.user_id)
        await close([w[k] for k in ("admin", "clin", "mod", "peer", "member", "carer")] + [late, newbie, oclin])

    run(scenario())


def test_levels_are_published_and_consistent():
    assert P.ROLE_LEVELS == {"member": 0, "carer": 0, "peer": 10, "clinician": 50, "moderator": 60, "admin": 100}
    assert all(P.ROLE_LEVELS[r] >= 50 for r in P.STAFF_ROLES)
    assert all(P.ROLE_LEVELS[r] < 50 for r in P.ROLES if r not in P.STAFF_ROLES)
    merged = P.with_role_levels({"users": {"@a:x": 100, "@b:x": 10}}, {"@b:x": 0, "@c:x": 60}, {"e": 50})
    assert merged == {"users": {"@a:x": 100, "@c:x": 60}, "events": {"e": 50}}
