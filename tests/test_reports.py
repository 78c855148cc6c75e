"""Reports against the real server: any member reports what they can see, the reported member
never learns who, enough reports out of hours hide a post, the reporter learns the outcome."""

from __future__ import annotations

import importlib.util
import json

import pytest

from protocol import triage as P
from protocol.errors import (
    AlreadyReported, BadField, MissingField, NotFound, NotInRoom, ReportNoService,
)
from tests.conftest import module_server
from tests.helpers import user
from tests.test_content_support import txn
from tests.triage_support import drain, frame_op, pushed, team

HAS_MODERATION = importlib.util.find_spec("sharon_server.features.moderation") is not None


rserver = module_server("reports", {"SHARON_TRIAGE_SCAN_S": "0"})


async def _everything_seen_by(client) -> str:
    """Every frame and event pushed to ``client`` so far, as one string to search."""
    frames = await pushed(client)
    events = []
    while not client._events.empty():
        events.append(client._events.get_nowait())
    return json.dumps([frames, events], default=str)


def test_a_report_reaches_staff_and_the_reporter_learns_the_outcome_anonymously(rserver, run):
    async def scenario():
        t = await team(rserver, mods=1, members=3)
        author, reporter, other = t.members
        mod = t.mods[0]
        room = (await t.admin.request("create_room", kind="chat", name="Evening", public=True,
                                      service_id=t.service_id))["room_id"]
        for x in t.members:
            await x.join(room)
        post = (await author.send(room, "you are all idiots"))["event_id"]
        await drain(*t.everyone())
        made = await reporter.request("report", room_id=room, event_id=post, category="abuse",
                                      note="this hurt to read")
        assert made["status"] == "open" and made["report_id"].startswith("rp_")
        with pytest.raises(AlreadyReported):
            await reporter.request("report", room_id=room, event_id=post, category="spam")
        await other.request("report", room_id=room, event_id=post, category="abuse")
        queued = (await mod.request("queue", service_id=t.service_id))["items"]
        assert len(queued) == 1
        item = queued[0]
        assert item["subject_user"] == author.user_id and item["subject_pseudonym"] == author.pseudonym
        assert item["report_count"] == 2 and item["kinds"] == ["report"] and item["category"] == "abuse"
        assert "idiots" in item["summary"]
        first = item["reporters"][0]
        assert (first["reporter"], first["reporter_pseudonym"], first["note"]) == \
            (reporter.user_id, reporter.pseudonym, "this hurt to read")
        mine = (await reporter.request("my_reports"))["reports"]
        assert [(r["report_id"], r["status"], r["outcome"]) for r in mine] == [(made["report_id"], "open", None)]

        await mod.request("queue_resolve", item_id=item["item_id"], outcome="action_taken", note="warned")
        told = await frame_op(reporter, "report_outcome")
        assert told["report_id"] == made["report_id"] and told["outcome"] == "action_taken"
        assert told["message"] == P.OUTCOME_WORDS["action_taken"]
        assert mod.user_id not in json.dumps(told) and mod.pseudonym not in json.dumps(told)
        assert (await frame_op(other, "report_outcome"))["outcome"] == "action_taken"
        mine = (await reporter.request("my_reports"))["reports"]
        assert [(r["status"], r["outcome"], r["message"]) for r in mine] == \
            [("closed", "action_taken", P.OUTCOME_WORDS["action_taken"])]
        notes = (await reporter.request("notifications"))["notifications"]  # also in the feed
        assert [(n["reason"], n["notice"]["report_id"], n["notice"]["outcome"]) for n in notes] == \
            [("report_outcome", made["report_id"], "action_taken")]

        # the reported member was told nothing that names a reporter, and got no report frames
        seen = await _everything_seen_by(author)
        for secret in (reporter.user_id, reporter.pseudonym, other.user_id, other.pseudonym,
                       made["report_id"], "this hurt to read"):
            assert secret not in seen
        assert "report_outcome" not in seen and '"alert"' not in seen
        assert (await author.request("my_reports"))["reports"] == []
        await t.close()

    run(scenario(), 60)


def test_what_can_be_reported_and_by_whom(rserver, run):
    async def scenario():
        t = await team(rserver, mods=1, members=3)
        a, b, c = t.members
        outsider = await user(rserver, "outsider")
        room = (await t.admin.request("create_room", kind="chat", name="Private", public=False,
                                      service_id=t.service_id))["room_id"]
        for x in (a, b):
            await t.admin.invite(room, x.user_id)
            await x.join(room)
        post = (await a.send(room, "hello"))["event_id"]
        with pytest.raises(NotInRoom):  # c is in the service but cannot see this private room
            await c.request("report", room_id=room, event_id=post, category="spam")
        with pytest.raises(NotInRoom):
            await outsider.request("report", room_id=room, event_id=post, category="spam")
        with pytest.raises(BadField) as exc:
            await b.request("report", room_id=room, event_id=post, category="gossip")
        assert exc.value.field == "category"
        with pytest.raises(MissingField) as exc:
            await b.request("report", room_id=room, category="spam")
        assert exc.value.field == "event_id"
        with pytest.raises(BadField) as exc:
            await b.request("report", room_id=room, event_id=post, category="spam", note="x" * 1001)
        assert exc.value.field == "note"
        with pytest.raises(BadField) as exc:
            await a.request("report", room_id=room, event_id=post, category="spam")
        assert exc.value.field == "event_id"
        with pytest.raises(BadField) as exc:
            await b.request("report", room_id=room, event_id=post, user_id=b.user_id, category="spam")
        assert exc.value.field == "user_id"
        elsewhere = (await t.admin.request("create_room", kind="chat", name="Other", public=True,
                                           service_id=t.service_id))["room_id"]
        await b.join(elsewhere)
        with pytest.raises(NotFound) as exc:  # the event is not in the named room
            await b.request("report", room_id=elsewhere, event_id=post, category="spam")
        assert exc.value.field == "event_id"
        with pytest.raises(NotFound) as exc:
            await b.request("report", room_id=elsewhere, user_id=c.user_id, category="abuse")
        assert exc.value.field == "user_id"

        # a member, and a DM (the DM belongs to the service the two share)
        assert (await b.request("report", room_id=room, user_id=a.user_id, category="identifying"))["status"] == "open"
        dm = (await a.request("create_dm", user_id=b.user_id))["room_id"]
        dm_post = (await a.send(dm, "give me your address"))["event_id"]
        await b.request("report", room_id=dm, event_id=dm_post, category="identifying")
        items = (await t.mods[0].request("queue", service_id=t.service_id))["items"]
        assert {(i["room_id"], i["event_id"], i["subject_user"]) for i in items} == \
            {(room, None, a.user_id), (dm, dm_post, a.user_id)}

        # a room outside every service has no queue
        loose = (await outsider.create_room("chat", "Loose", public=True))["room_id"]
        stranger = await user(rserver, "stranger")
        await stranger.join(loose)
        said = (await outsider.send(loose, "hi"))["event_id"]
        with pytest.raises(ReportNoService) as exc:
            await stranger.request("report", room_id=loose, event_id=said, category="spam")
        assert exc.value.field == "room_id"
        await t.close()
        await outsider.close()
        await stranger.close()

    run(scenario(), 60)


@pytest.mark.skipif(not HAS_MODERATION, reason="the moderation feature (hide) is not installed")
def test_three_reports_out_of_hours_hide_a_post_but_not_while_someone_is_on_duty(rserver, run):
    async def scenario():
        t = await team(rserver, mods=1, members=5)
        author, r1, r2, r3, r4 = t.members
        mod = t.mods[0]
        forum = (await t.admin.request("create_room", kind="forum", name="Talk", public=True,
                                       service_id=t.service_id))["room_id"]
        for x in t.members:
            await x.join(forum)
        thread = (await author.request("thread_create", room_id=forum, txn_id=txn(), title="Nasty",
                                       body="everyone here is pathetic"))["event_id"]
        await drain(*t.everyone())
        await r1.request("report", room_id=forum, event_id=thread, category="abuse")
        await r2.request("report", room_id=forum, event_id=thread, category="abuse")
        item = (await mod.request("queue", service_id=t.service_id))["items"][0]
        assert item["hidden"] is False and item["report_count"] == 2
        await drain(mod)
        await r3.request("report", room_id=forum, event_id=thread, category="abuse")
        alert = await frame_op(mod, "alert")
        assert alert["hidden"] is True and alert["route"] == "fallback" and alert["item"]["report_count"] == 3
        assert (await mod.request("queue", service_id=t.service_id))["items"][0]["hidden"] is True
        seen = [e for e in (await r4.history(forum))["events"] if e["event_id"] == thread]
        assert seen and seen[0]["content"]["body"] != "everyone here is pathetic"
        assert seen[0].get("moderation", {}).get("hidden") is True
        # the author is told it is hidden, never by whom
        text = await _everything_seen_by(author)
        for secret in (r1.user_id, r2.user_id, r3.user_id, r1.pseudonym, r2.pseudonym, r3.pseudonym):
            assert secret not in text

        # with a moderator on duty, three reports leave the post up for them to judge
        await mod.request("duty", service_id=t.service_id, on=True)
        other = (await author.request("thread_create", room_id=forum, txn_id=txn(), title="Again",
                                      body="still pathetic"))["event_id"]
        for r in (r1, r2, r3, r4):
            await r.request("report", room_id=forum, event_id=other, category="abuse")
        items = {i["event_id"]: i for i in (await mod.request("queue", service_id=t.service_id))["items"]}
        assert items[other]["report_count"] == 4 and items[other]["hidden"] is False
        seen = [e for e in (await r4.history(forum))["events"] if e["event_id"] == other]
        assert seen[0]["content"]["body"] == "still pathetic"
        await t.close()

    run(scenario(), 60)


def test_reports_on_postgresql(pg_server, run):
    async def scenario():
        t = await team(pg_server, mods=1, members=2)
        a, b = t.members
        room = (await t.admin.request("create_room", kind="chat", name="Evening", public=True,
                                      service_id=t.service_id))["room_id"]
        for x in t.members:
            await x.join(room)
        post = (await a.send(room, "hmm"))["event_id"]
        made = await b.request("report", room_id=room, event_id=post, category="risk_to_others")
        await t.mods[0].request("duty", service_id=t.service_id, on=True)
        item = (await t.mods[0].request("queue", service_id=t.service_id))["items"][0]
        await t.mods[0].request("queue_claim", item_id=item["item_id"])
        await t.mods[0].request("queue_resolve", item_id=item["item_id"], outcome="referred")
        assert (await frame_op(b, "report_outcome"))["report_id"] == made["report_id"]
        assert (await b.request("my_reports"))["reports"][0]["outcome"] == "referred"
        assert (await t.mods[0].request("triage_scan", service_id=t.service_id))["offered"] == 0
        await t.close()

    run(scenario(), 60)


def test_staff_never_see_or_work_reports_about_themselves(rserver, run):
    async def scenario():
        t = await team(rserver, mods=2, members=1)
        m1, m2 = t.mods
        reporter = t.members[0]
        room = (await t.admin.request("create_room", kind="chat", name="Evening", public=True,
                                      service_id=t.service_id))["room_id"]
        for x in (m1, m2, reporter):
            await x.join(room)
        await m1.request("duty", service_id=t.service_id, on=True)
        post = (await m1.send(room, "a moderator being unkind"))["event_id"]
        await drain(*t.everyone())
        await reporter.request("report", room_id=room, event_id=post, category="risk_to_others", note="scared")
        alert = await frame_op(m2, "alert")  # m1 is on duty but is the subject: the fallback gets it
        assert alert["route"] == "fallback" and alert["item"]["reporters"][0]["reporter"] == reporter.user_id
        await frame_op(t.admin, "alert")
        seen = await _everything_seen_by(m1)
        assert reporter.user_id not in seen and "scared" not in seen and '"alert"' not in seen
        assert (await m1.request("queue", service_id=t.service_id))["items"] == []
        item_id = (await m2.request("queue", service_id=t.service_id))["items"][0]["item_id"]
        from protocol.errors import TriageItemNotFound
        with pytest.raises(TriageItemNotFound):
            await m1.request("queue_claim", item_id=item_id)
        await m2.request("queue_resolve", item_id=item_id, outcome="action_taken")
        assert (await frame_op(reporter, "report_outcome"))["outcome"] == "action_taken"
        await t.close()

    run(scenario(), 60)
