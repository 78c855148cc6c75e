"""The triage queue: the pure ranking (Hypothesis), countdowns and the rota maths, then the
queue, claims, escalation, duty, rota and unanswered posts against the real server."""

from __future__ import annotations

import importlib.util
import itertools

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from protocol import triage as P
from protocol.errors import (
    BadField, Forbidden, MissingField, NoClinician, TriageItemClaimed, TriageItemNotFound,
)
from protocol.spaces import validate_settings
from tests.conftest import module_server
from tests.test_content_support import txn
from tests.triage_support import drain, frame_op, pushed_ops, team

NOW = 1_800_000_000_000

# -- the pure ranking ------------------------------------------------------------------------------

_ids = itertools.count()


@st.composite
def items(draw):
    category = draw(st.sampled_from(P.CATEGORIES))
    created = draw(st.integers(NOW - 3 * 86_400_000, NOW))
    target = draw(st.sampled_from([60_000, 15 * 60_000, 3_600_000, 86_400_000]))
    return {"item_id": f"tq_{draw(st.integers(0, 10**9)):010d}", "category": category,
            "risk_score": draw(st.integers(0, 1000)), "created_ts": created, "due_ts": created + target}


def _unique(lst):
    seen, out = set(), []
    for i in lst:
        if i["item_id"] not in seen:
            seen.add(i["item_id"])
            out.append(i)
    return out


@given(st.lists(items(), max_size=40).map(_unique), st.randoms())
def test_rank_is_deterministic_whatever_the_arrival_order(batch, rnd):
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    assert P.rank(shuffled, NOW) == P.rank(batch, NOW)
    assert len({P.queue_key(i, NOW) for i in batch}) == len(batch)  # a total order: no ties


@given(st.lists(items(), min_size=2, max_size=40).map(_unique))
def test_rank_puts_severity_first_then_score_then_age(batch):
    ranked = P.rank(batch, NOW)
    for a, b in zip(ranked, ranked[1:]):
        sa, sb = P.SEVERITY[a["category"]], P.SEVERITY[b["category"]]
        assert sa >= sb, "a more severe category never sits below a less severe one"
        oa, ob = P.is_overdue(a["due_ts"], NOW), P.is_overdue(b["due_ts"], NOW)
        if sa == sb and oa == ob:
            assert a["risk_score"] >= b["risk_score"]
            if a["risk_score"] == b["risk_score"]:
                assert (a["created_ts"], a["item_id"]) < (b["created_ts"], b["item_id"]), "older first"


@given(items(), items())
def test_an_overdue_item_outranks_fresh_ones_of_its_category_only(a, b):
    a = dict(a, item_id="tq_a", due_ts=NOW - 1)  # overdue
    b = dict(b, item_id="tq_b", category=a["category"], due_ts=NOW + 60_000, risk_score=1000,
             created_ts=a["created_ts"] - 1)
    assert P.rank([b, a], NOW)[0]["item_id"] == "tq_a"
    more = [c for c in P.CATEGORIES if P.SEVERITY[c] > P.SEVERITY[a["category"]]]
    if more:
        c = dict(b, category=more[0], risk_score=0)
        assert P.rank([a, c], NOW)[0]["item_id"] == "tq_b"


@given(st.integers(0, 10**13), st.sampled_from(P.CATEGORIES), st.integers(0, 10**12))
def test_countdown_and_due(created, category, now):
    due = P.due_ts(created, category, P.DEFAULT_RESPONSE_TARGETS)
    assert due - created == P.DEFAULT_RESPONSE_TARGETS[category]
    assert P.countdown_ms(due, now) == due - now
    assert P.is_overdue(due, now) == (P.countdown_ms(due, now) <= 0)


def test_risk_categories_and_scores_normalise():
    assert P.normalise_category("report", "abuse") == "abuse"
    assert P.normalise_category("risk", "suicide") == "risk_to_self"
    assert P.normalise_category("risk", "violence") == "risk_to_others"
    assert P.normalise_category("premod", None) == "other"
    assert P.normalise_category("unanswered", None) == "unanswered"
    assert [P.score_milli(v) for v in (0.85, 1, 85, 850, 5000, -1, True, "x")] == [850, 1000, 850, 850, 1000, 0, 0, 0]


MONDAY = 4 * 86_400_000  # 1970-01-05 00:00 UTC was a Monday


def test_rota_slots_are_weekly_utc_and_may_cross_midnight():
    night = [{"day": "sun", "start": "22:00", "end": "02:00", "user_ids": ["@owl:x"]},
             {"day": "mon", "start": "09:00", "end": "17:00", "user_ids": ["@day:x", "@lark:x"]}]
    hour = 3_600_000
    week = 7 * 86_400_000
    assert P.minute_of_week(MONDAY) == 0
    assert P.scheduled_now(night, MONDAY + hour) == {"@owl:x"}
    assert P.scheduled_now(night, MONDAY - hour + 5 * week) == {"@owl:x"}
    assert P.scheduled_now(night, MONDAY + 2 * hour) == set()
    assert P.scheduled_now(night, MONDAY + 3 * hour) == set()  # 3 a.m.: nobody scheduled
    assert P.scheduled_now(night, MONDAY + 9 * hour) == {"@day:x", "@lark:x"}
    whole = [{"day": "tue", "start": "00:00", "end": "00:00", "user_ids": ["@all:x"]}]
    assert P.scheduled_now(whole, MONDAY + 24 * hour + 23 * hour) == {"@all:x"}


@hsettings(max_examples=50)
@given(st.integers(0, 10**13))
def test_an_empty_schedule_puts_nobody_on_duty(now):
    assert P.scheduled_now([], now) == set()


@pytest.mark.parametrize("settings,field", [
    ({"rota_schedule": [{"day": "funday", "start": "01:00", "end": "02:00", "user_ids": ["@a:x"]}]},
     "settings.rota_schedule[0].day"),
    ({"rota_schedule": [{"day": "mon", "start": "25:00", "end": "02:00", "user_ids": ["@a:x"]}]},
     "settings.rota_schedule[0].start"),
    ({"rota_schedule": [{"day": "mon", "start": "01:00", "end": "02:00", "user_ids": ["nobody"]}]},
     "settings.rota_schedule[0].user_ids"),
    ({"rota_fallback": ["everyone"]}, "settings.rota_fallback"),
    ({"rota_fallback": []}, "settings.rota_fallback"),
    ({"response_targets": {"abuse": 10}}, "settings.response_targets.abuse"),
    ({"response_targets": {"gossip": 60000}}, "settings.response_targets.gossip"),
    ({"crisis_signposting": [{"name": "x"}]}, "settings.crisis_signposting[0]"),
    ({"report_hide_count": 0}, "settings.report_hide_count"),
    ({"risk_hold_threshold": 0.8}, "settings.risk_hold_threshold"),
])
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(BadField) as exc:
        validate_settings(settings)
    assert exc.value.field == field


def test_default_settings_are_sensible():
    merged = validate_settings({"response_targets": {"spam": 3_600_000}})
    assert merged["response_targets"]["spam"] == 3_600_000
    assert merged["response_targets"]["risk_to_self"] == 15 * 60_000
    assert merged["report_hide_count"] == 3 and merged["rota_schedule"] == []
    assert any(e.get("phone") == "116 123" for e in merged["crisis_signposting"])


def test_cli_countdowns_and_queue_lines():
    from clients.cli.cmd_triage import format_countdown, queue_lines

    assert format_countdown(15 * 60_000) == "15m00s"
    assert format_countdown(2 * 3_600_000 + 61_000) == "2h01m"
    assert format_countdown(0) == "OVERDUE 0m00s" and format_countdown(-90_000) == "OVERDUE 1m30s"
    item = {"item_id": "tq_1", "category": "abuse", "risk_score": 0, "due_ts": 10**15, "status": "open",
            "kinds": ["report"], "summary": "rude\x1b[31m", "report_count": 2, "high_risk": False,
            "claimed_by": None, "subject_user": "@u:x", "subject_pseudonym": "calm-otter"}
    (line,) = queue_lines([item])
    assert line.startswith("  1  abuse") and "reports=2" in line and line.endswith("tq_1")
    assert "\x1b" not in line  # summaries are cleaned of terminal escapes


# -- against the real server ---------------------------------------------------------------------

tserver = module_server("triage", {"SHARON_TRIAGE_SCAN_S": "0"})


async def _chat(team_, *joiners):
    room = (await team_.admin.request("create_room", kind="chat", name="Evening", public=True,
                                      service_id=team_.service_id))["room_id"]
    for j in joiners:
        await j.join(room)
    return room


async def _reported(author, reporter, room, body, category, **extra):
    """``author`` posts ``body`` in ``room`` and ``reporter`` reports it: the post's event ID."""
    post = (await author.send(room, body))["event_id"]
    await reporter.request("report", room_id=room, event_id=post, category=category, **extra)
    return post


def _rankable(item):
    return {k: item[k] for k in ("item_id", "category", "risk_score", "created_ts", "due_ts")}


def test_queue_is_ranked_by_the_pure_function_with_countdowns(tserver, run):
    async def scenario():
        t = await team(tserver, mods=1, members=4)
        a, b, c, d = t.members
        room = await _chat(t, *t.members)
        posts = [(await x.send(room, f"message {n}"))["event_id"] for n, x in enumerate((a, b, c))]
        await d.request("report", room_id=room, event_id=posts[0], category="spam")
        await d.request("report", room_id=room, event_id=posts[1], category="abuse", note="unkind")
        await d.request("report", room_id=room, event_id=posts[2], category="risk_to_self")
        await a.request("report", room_id=room, user_id=b.user_id, category="identifying")
        got = await t.mods[0].request("queue", service_id=t.service_id)
        items = got["items"]
        assert got["total"] == 4 and len(items) == 4
        assert [i["item_id"] for i in items] == [i["item_id"] for i in P.rank([_rankable(i) for i in items], got["now_ts"])]
        assert items[0]["category"] == "risk_to_self" and items[0]["high_risk"] is True
        assert items[-1]["category"] == "spam"
        for i in items:
            assert i["countdown_ms"] == i["due_ts"] - got["now_ts"]
            assert i["due_ts"] - i["created_ts"] == P.DEFAULT_RESPONSE_TARGETS[i["category"]]
        # the caller's services when none is named; members see no queue
        assert [i["item_id"] for i in (await t.mods[0].request("queue"))["items"]] == [i["item_id"] for i in items]
        with pytest.raises(Forbidden):
            await a.request("queue", service_id=t.service_id)
        assert (await a.request("queue"))["items"] == []
        await t.close()

    run(scenario(), 60)


def test_claim_conflicts_release_and_resolve(tserver, run):
    async def scenario():
        t = await team(tserver, mods=2, members=2)
        m1, m2 = t.mods
        a, b = t.members
        room = await _chat(t, a, b)
        await _reported(a, b, room, "buy my stuff", category="spam")
        item_id = (await m1.request("queue", service_id=t.service_id))["items"][0]["item_id"]
        claimed = await m1.request("queue_claim", item_id=item_id)
        assert claimed["item"]["claimed_by"] == m1.user_id and claimed["item"]["status"] == "claimed"
        assert (await m1.request("queue_claim", item_id=item_id))["item"]["claimed_by"] == m1.user_id
        for op, extra in (("queue_claim", {}), ("queue_release", {}), ("queue_resolve", {"outcome": "no_action"}),
                          ("queue_escalate", {})):
            with pytest.raises(TriageItemClaimed) as exc:
                await m2.request(op, item_id=item_id, **extra)
            assert exc.value.field == "item_id"
        assert (await m1.request("queue_release", item_id=item_id))["item"]["claimed_by"] is None
        await m2.request("queue_claim", item_id=item_id)
        done = await m2.request("queue_resolve", item_id=item_id, outcome="action_taken", note="removed")
        assert done == {"item_id": item_id, "outcome": "action_taken", "reporters_told": 1}
        with pytest.raises(TriageItemNotFound):
            await m1.request("queue_claim", item_id=item_id)
        with pytest.raises(TriageItemNotFound):  # members cannot even learn an item exists
            await a.request("queue_claim", item_id=item_id)
        with pytest.raises(MissingField) as exc:
            await m1.request("queue_claim")
        assert exc.value.field == "item_id"
        with pytest.raises(BadField) as exc:
            await m1.request("queue_resolve", item_id=item_id, outcome="shrug")
        assert exc.value.field == "outcome"
        assert (await m1.request("queue", service_id=t.service_id))["items"] == []
        await t.close()

    run(scenario(), 60)


def test_duty_decides_who_gets_live_alerts(tserver, run):
    async def scenario():
        t = await team(tserver, mods=2, members=2)
        m1, m2 = t.mods
        a, b = t.members
        room = await _chat(t, a, b)
        rota = await m1.request("rota", service_id=t.service_id)
        assert rota["anyone_on_duty"] is False and rota["on_duty"] == [] and rota["schedule"] == []
        assert {u["user_id"] for u in rota["fallback_users"]} == {t.admin.user_id, m1.user_id, m2.user_id}
        on = await m1.request("duty", service_id=t.service_id, on=True)
        assert on["changed"] is True and [u["user_id"] for u in on["on_duty"]] == [m1.user_id]
        assert on["on_duty"][0]["how"] == "marked"
        with pytest.raises(Forbidden):
            await a.request("duty", service_id=t.service_id, on=True)
        with pytest.raises(MissingField) as exc:
            await m1.request("duty", service_id=t.service_id)
        assert exc.value.field == "on"
        await drain(*t.everyone())
        post = await _reported(a, b, room, "I feel unsafe tonight", category="risk_to_self")
        alert = await frame_op(m1, "alert")
        assert alert["route"] == "on_duty" and alert["item"]["event_id"] == post
        assert alert["item"]["category"] == "risk_to_self" and alert["item"]["reporters"][0]["reporter"] == b.user_id
        assert "alert" not in await pushed_ops(m2) and "alert" not in await pushed_ops(t.admin)
        assert "alert" not in await pushed_ops(a)
        # a low-risk report raises no alert
        await _reported(a, b, room, "spam spam", category="spam")
        assert "alert" not in await pushed_ops(m1)
        # off duty: the fallback (moderators and admins) is alerted
        off = await m1.request("duty", service_id=t.service_id, on=False)
        assert off["on_duty"] == [] and (await m1.request("rota", service_id=t.service_id))["anyone_on_duty"] is False
        await _reported(a, b, room, "someone will get hurt", category="risk_to_others")
        for staff in (m1, m2, t.admin):
            assert (await frame_op(staff, "alert"))["route"] == "fallback"
        await t.close()

    run(scenario(), 60)


def test_escalation_reaches_the_on_duty_clinician_first(tserver, run):
    async def scenario():
        t = await team(tserver, mods=1, clinicians=2, members=2)
        mod = t.mods[0]
        c1, c2 = t.clinicians
        a, b = t.members
        room = await _chat(t, a, b)
        await _reported(a, b, room, "things are bad", category="risk_to_self")
        item_id = (await mod.request("queue", service_id=t.service_id))["items"][0]["item_id"]
        await c2.request("duty", service_id=t.service_id, on=True)
        await drain(*t.everyone())
        up = await mod.request("queue_escalate", item_id=item_id, note="please call them")
        assert up["escalated_to"] == [c2.user_id] and up["on_duty"] is True and up["item"]["escalated"] is True
        frame = await frame_op(c2, "escalation")
        assert frame["item"]["item_id"] == item_id and frame["note"] == "please call them"
        assert frame["by_pseudonym"] == mod.pseudonym
        assert "escalation" not in await pushed_ops(c1)
        await c2.request("duty", service_id=t.service_id, on=False)
        up = await mod.request("queue_escalate", item_id=item_id)
        assert sorted(up["escalated_to"]) == sorted([c1.user_id, c2.user_id]) and up["on_duty"] is False
        await t.close()
        # a service without clinicians cannot escalate
        t2 = await team(tserver, mods=1, members=2)
        room = await _chat(t2, *t2.members)
        await _reported(t2.members[0], t2.members[1], room, "hm", category="other")
        item_id = (await t2.mods[0].request("queue", service_id=t2.service_id))["items"][0]["item_id"]
        with pytest.raises(NoClinician):
            await t2.mods[0].request("queue_escalate", item_id=item_id)
        await t2.close()

    run(scenario(), 60)


def test_unanswered_posts_go_to_peers_then_clinicians(tserver, run):
    async def scenario():
        t = await team(tserver, mods=1, clinicians=1, peers=1, members=2,
                       settings={"unanswered_after_ms": 0, "unanswered_escalate_after_ms": 86_400_000})
        a, b = t.members
        peer, clin, mod = t.peers[0], t.clinicians[0], t.mods[0]
        forum = (await t.admin.request("create_room", kind="forum", name="Talk", public=True,
                                       service_id=t.service_id))["room_id"]
        for x in (a, b, peer, clin, mod):
            await x.join(forum)
        lonely = (await a.request("thread_create", room_id=forum, txn_id=txn(), title="Anyone else?",
                                  body="Nobody talks to me"))["event_id"]
        answered = (await b.request("thread_create", room_id=forum, txn_id=txn(), title="Sleep",
                                    body="Tips?"))["event_id"]
        await a.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=answered, body="Routine")
        await mod.request("thread_create", room_id=forum, txn_id=txn(), title="Welcome", body="Rules")
        wall = (await b.request("wall_open", service_id=t.service_id))["room_id"]
        wall_post = (await b.request("wall_post", room_id=wall, txn_id=txn(), body="first day back"))["event_id"]
        await drain(*t.everyone())
        with pytest.raises(Forbidden):
            await a.request("triage_scan", service_id=t.service_id)
        assert await mod.request("triage_scan", service_id=t.service_id) == {"offered": 2, "escalated": 0, "answered": 0}
        offers = [await frame_op(peer, "unanswered_offer") for _ in range(2)]
        assert {o["event_id"] for o in offers} == {lonely, wall_post}
        offer = next(o for o in offers if o["event_id"] == lonely)
        assert offer["stage"] == "peers" and offer["title"] == "Anyone else?" and offer["item_id"] is None
        assert "unanswered_offer" not in await pushed_ops(clin)
        assert "unanswered_offer" not in await pushed_ops(a)
        queued = (await mod.request("queue", service_id=t.service_id))["items"]
        assert sorted((i["event_id"], i["category"]) for i in queued) == \
            sorted([(lonely, "unanswered"), (wall_post, "unanswered")])
        queued = [i for i in queued if i["event_id"] == lonely]
        assert await mod.request("triage_scan", service_id=t.service_id) == {"offered": 0, "escalated": 0, "answered": 0}
        await t.admin.request("service_settings", service_id=t.service_id,
                              settings={"unanswered_escalate_after_ms": 0})
        assert await mod.request("triage_scan", service_id=t.service_id) == {"offered": 0, "escalated": 2, "answered": 0}
        offers = [await frame_op(clin, "unanswered_offer") for _ in range(2)]
        offer = next(o for o in offers if o["event_id"] == lonely)
        assert offer["stage"] == "clinicians" and offer["item_id"] == queued[0]["item_id"]
        await peer.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=lonely, body="Me too, hello")
        await peer.request("wall_open", service_id=t.service_id, user_id=b.user_id)
        await peer.request("comment", room_id=wall, txn_id=txn(), post_id=wall_post, body="welcome back")
        assert await mod.request("triage_scan", service_id=t.service_id) == {"offered": 0, "escalated": 0, "answered": 2}
        assert (await mod.request("queue", service_id=t.service_id))["items"] == []
        assert await mod.request("triage_scan", service_id=t.service_id) == {"offered": 0, "escalated": 0, "answered": 0}
        await t.close()

    run(scenario(), 60)


def test_open_items_and_duty_survive_a_restart(server, run):
    async def scenario():
        t = await team(server, mods=1, members=2)
        a, b = t.members
        room = await _chat(t, a, b)
        await _reported(a, b, room, "hmm", category="abuse", note="rude")
        await t.mods[0].request("duty", service_id=t.service_id, on=True)
        before = (await t.mods[0].request("queue", service_id=t.service_id))["items"]
        mod_name = t.mods[0].pseudonym
        await t.close()
        return t.service_id, before, mod_name

    service_id, before, mod_name = run(scenario(), 60)
    server.restart()

    async def after():
        from clients.client import SharonClient
        from tests.helpers import PASSWORD
        mod = await SharonClient.connect(server.ws_url)
        await mod.login(mod_name, PASSWORD)
        items = (await mod.request("queue", service_id=service_id))["items"]
        assert [(i["item_id"], i["report_count"], i["reporters"][0]["note"]) for i in items] == \
            [(before[0]["item_id"], 1, "rude")]
        assert [u["user_id"] for u in (await mod.request("rota", service_id=service_id))["on_duty"]] == [mod.user_id]
        await mod.close()

    run(after(), 60)


def test_cli_report_duty_rota_and_queue(tserver, run, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import PASSWORD

    script = Path(sys.executable).with_name("sharon")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "clients.cli.main"]

    def sharon(who, *args, ok=True):
        env = dict(os.environ, SHARON_CONFIG_DIR=str(tmp_path / who.pseudonym), SHARON_SERVER=tserver.ws_url,
                   SHARON_PASSWORD=PASSWORD)
        result = subprocess.run(base + list(args), env=env, capture_output=True, text=True, timeout=60)
        assert (result.returncode == 0) == ok, (args, result.stdout, result.stderr)
        return result.stdout.strip() if ok else result.stderr

    t = run(team(tserver, mods=1, members=2))
    a, b = t.members
    mod = t.mods[0]
    room = run(_chat(t, a, b))
    post = run(a.send(room, "cli test message"))["event_id"]
    for who in (b, mod):
        sharon(who, "login", who.pseudonym)
    report_id = sharon(b, "report", room, post, "--category", "abuse", "--note", "from the cli")
    assert report_id.startswith("rp_")
    assert "on duty: " + mod.pseudonym in sharon(mod, "duty", "on", t.service_id)
    assert "on duty now: " + mod.pseudonym in sharon(mod, "rota", t.service_id)
    listing = sharon(mod, "queue", "--service", t.service_id, "--once")
    assert "abuse" in listing and "reports=1" in listing and "cli test message" in listing
    item_id = listing.split()[-1]
    assert "claimed" in sharon(mod, "queue", "claim", item_id)
    assert "1 reporter(s) told" in sharon(mod, "queue", "resolve", item_id, "no_action", "--note", "fine")
    mine = sharon(b, "my-reports", "--json")
    assert report_id in mine and "no_action" in mine
    run(t.close())


@pytest.mark.skipif(importlib.util.find_spec("sharon_server.features.moderation") is None,
                    reason="needs the moderation feature (appeals)")
def test_an_appeal_against_a_sanction_is_a_queue_item(tserver, run):
    async def scenario():
        t = await team(tserver, mods=1, members=1)
        mod, member = t.mods[0], t.members[0]
        made = await mod.request("sanction", service_id=t.service_id, user_id=member.user_id, kind="warn",
                                 rule="be-kind", reason="unkind words")
        appeal = await member.request("appeal", sanction_id=made["sanction_id"], text="I was quoting someone")
        items = (await t.admin.request("queue", service_id=t.service_id))["items"]
        assert [(i["kinds"], i["category"], i["subject_user"], i["ref"]) for i in items] == \
            [(["appeal"], "appeal", member.user_id, appeal["appeal_id"])]
        assert items[0]["due_ts"] - items[0]["created_ts"] == P.DEFAULT_RESPONSE_TARGETS["appeal"]
        await t.admin.request("appeal_decide", appeal_id=appeal["appeal_id"], outcome="overturned",
                              reason="it was a quote")  # the decision closes the item
        assert (await t.admin.request("queue", service_id=t.service_id))["items"] == []
        await t.close()

    run(scenario(), 60)
