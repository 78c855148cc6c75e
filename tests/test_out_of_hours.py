"""Out of hours against the real server: a risky post at 3 a.m. with nobody on duty is held,
its author signposted and the fallback alerted; with a moderator on duty (marked, or put on by
the rota) the post goes up and the on-duty moderator gets a live alert.

"3 a.m." is "nobody marked on duty and an empty schedule": the rota is evaluated at the
server's clock, so these tests never depend on the wall clock.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import module_server
from tests.triage_support import drain, frame_op, pushed, pushed_ops, team

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sharon_server.features.risk") is None
    or importlib.util.find_spec("sharon_server.features.moderation") is None,
    reason="needs the risk and moderation features")

RISKY = "I am going to kill myself tonight"
WHOLE_WEEK = [{"day": d, "start": "00:00", "end": "00:00", "user_ids": []}
              for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]


oserver = module_server("ooh", {"SHARON_TRIAGE_SCAN_S": "0"})


async def _room(t):
    room = (await t.admin.request("create_room", kind="chat", name="Late", public=True,
                                  service_id=t.service_id))["room_id"]
    for x in t.everyone()[1:]:
        await x.join(room)
    await drain(*t.everyone())
    return room


def test_a_risky_post_at_3am_is_held_signposted_and_alerted(oserver, run):
    async def scenario():
        t = await team(oserver, mods=1, members=2)
        author, peer = t.members
        mod = t.mods[0]
        room = await _room(t)
        assert (await mod.request("rota", service_id=t.service_id))["anyone_on_duty"] is False
        reply = await author.request("send", room_id=room, txn_id="late-1", body=RISKY)
        assert reply["held"] is True and reply["held_id"]
        sign = await frame_op(author, "signpost")
        assert sign["held"] is True and sign["service_id"] == t.service_id
        assert any(r.get("phone") == "116 123" for r in sign["resources"])
        for staff in (mod, t.admin):  # the fallback: moderators and admins
            alert = await frame_op(staff, "alert")
            assert alert["route"] == "fallback"
            assert alert["item"]["kinds"] == ["premod"] and alert["item"]["ref"] == reply["held_id"]
            assert alert["item"]["category"] == "risk_to_self" and alert["item"]["risk_score"] >= 800
            assert alert["item"]["subject_user"] == author.user_id
        # nobody else sees the post, or any alert
        seen = await pushed(peer)
        assert all(f.get("op") not in ("alert", "signpost") for f in seen)
        assert all(e.get("content", {}).get("body") != RISKY for e in (await peer.history(room))["events"])
        queued = (await mod.request("queue", service_id=t.service_id))["items"]
        assert [i["ref"] for i in queued] == [reply["held_id"]]
        # a calm post at 3 a.m. goes straight up
        calm = await author.request("send", room_id=room, txn_id="late-2", body="thanks, I will call someone")
        assert "event_id" in calm and not calm.get("held")
        # the moderator's decision on the held post closes its queue item
        await mod.request("held_reject", held_id=reply["held_id"], reason="we have messaged you privately")
        assert (await mod.request("queue", service_id=t.service_id))["items"] == []
        await t.close()

    run(scenario(), 60)


def test_with_a_moderator_on_duty_the_post_goes_up_and_raises_a_live_alert(oserver, run):
    async def scenario():
        t = await team(oserver, mods=2, members=2)
        author, peer = t.members
        m1, m2 = t.mods
        room = await _room(t)
        await m1.request("duty", service_id=t.service_id, on=True)
        await drain(*t.everyone())
        reply = await author.request("send", room_id=room, txn_id="day-1", body=RISKY)
        assert not reply.get("held") and reply["event_id"]
        alert = await frame_op(m1, "alert")
        assert alert["route"] == "on_duty" and alert["item"]["event_id"] == reply["event_id"]
        assert alert["item"]["kinds"] == ["risk"] and alert["item"]["category"] == "risk_to_self"
        # signposting still goes to the author of a risk-to-self post (signpost_when_on_duty)
        sign = await frame_op(author, "signpost")
        assert sign["held"] is False
        assert "alert" not in await pushed_ops(m2) and "alert" not in await pushed_ops(t.admin)
        assert "alert" not in await pushed_ops(peer)
        # a service may turn that off
        await t.admin.request("service_settings", service_id=t.service_id, settings={"signpost_when_on_duty": False})
        await drain(author, m1)
        again = await author.request("send", room_id=room, txn_id="day-2", body=RISKY + " again")
        assert not again.get("held")
        await frame_op(m1, "alert")
        assert "signpost" not in await pushed_ops(author)
        await t.close()

    run(scenario(), 60)


def test_the_rota_schedule_puts_staff_on_duty_without_a_mark(oserver, run):
    async def scenario():
        t = await team(oserver, mods=1, members=2)
        author = t.members[0]
        mod = t.mods[0]
        room = await _room(t)
        slots = [dict(s, user_ids=[mod.user_id]) for s in WHOLE_WEEK]
        await t.admin.request("service_settings", service_id=t.service_id,
                              settings={"rota_schedule": slots, "rota_fallback": [t.admin.user_id]})
        rota = await mod.request("rota", service_id=t.service_id)
        assert rota["anyone_on_duty"] is True
        assert [(u["user_id"], u["how"]) for u in rota["on_duty"]] == [(mod.user_id, "scheduled")]
        assert [u["user_id"] for u in rota["fallback_users"]] == [t.admin.user_id]
        await drain(*t.everyone())
        reply = await author.request("send", room_id=room, txn_id="sched-1", body=RISKY)
        assert not reply.get("held")
        assert (await frame_op(mod, "alert"))["route"] == "on_duty"
        assert "alert" not in await pushed_ops(t.admin)
        # the schedule empties: the named fallback gets the alert and the post is held again
        await t.admin.request("service_settings", service_id=t.service_id, settings={"rota_schedule": []})
        held = await author.request("send", room_id=room, txn_id="sched-2", body=RISKY)
        assert held["held"] is True
        assert (await frame_op(t.admin, "alert"))["route"] == "fallback"
        assert "alert" not in await pushed_ops(mod)
        await t.close()

    run(scenario(), 60)
