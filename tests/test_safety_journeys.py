"""End-to-end safety journeys across the #5 and #6 features on one real server.

Each test is a story a user would live through, crossing the features built separately
(invites, vault, risk, triage, moderation, staff access, unmasking, audit, CLI), so that the
pieces are proven to fit: the ops one feature expects from another exist under the names
used, the pushes are really sent, and the CLI drives the server.

1. Night: a clinician invites a member (identity in the vault); the member picks a pseudonym,
   posts a risky thread in a forum with nobody on duty -> held, signposted, the fallback
   moderator alerted; the moderator goes on duty, claims the queue item and rejects the post
   from the ``sharon`` CLI; the member is told why; the resubmitted post goes up and raises a
   live on-duty alert that the moderator resolves from the CLI.
2. A report: a member reports a post; a moderator observes the room without appearing, reads
   the member card, hides the post and mutes the author citing a rule, closes the case (the
   reporter learns the outcome, anonymously); the author appeals, the issuing moderator may
   not decide, a different one overturns it, and the appeal's queue item closes.
3. Unmasking: a request approved by a second staff member and viewed, all in the audit log,
   verified with ``sharon-server audit verify`` on the data directory after the server stops.

Smaller ones: a risky message or forum thread sent from a terminal (``sharon send``,
``sharon forum-new``) is held with the crisis lines printed; a wall comment is reported,
observed (listings and media included) and hidden; ``sharon chat`` shows the crisis lines,
the held notice and the moderator's answer.

Every journey also checks the privacy rule on what it saw: no frame to a non-staff session
carries a vault value, the reported member never learns who reported them, and the server's
log lines carry no identity values, message bodies or report notes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from protocol.errors import Muted, SameModerator
from protocol.identity import Identity
from tests.conftest import ServerProcess
from tests.helpers import PASSWORD, all_history, user
from tests.staff_helpers import contains_any, grant_admin, invited_member, make_identity, values_of
from tests.triage_support import drain, pushed, team

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(any(importlib.util.find_spec(f"sharon_server.features.{m}") is None
                           for m in ("risk", "moderation", "triage", "staff", "unmask", "invites")),
                       reason="needs every #5/#6 feature"),
]

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("sharon")
SHARON = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "clients.cli.main"]
RISKY_TITLE = "Cannot do this any more"
RISKY = "I am going to kill myself tonight, I have the pills ready"
NOTE = "qxnote: this really hurt to read"


@pytest.fixture(scope="module")
def jserver(tmp_path_factory):
    """One server for the first two journeys (each makes its own service); no scan timer."""
    proc = ServerProcess(tmp_path_factory.mktemp("journeys") / "sharon-data", {"SHARON_TRIAGE_SCAN_S": "0"}).start()
    yield proc
    proc.stop()


class Seen:
    """Everything pushed to one client during a journey (frames and events), kept for checks."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.frames: List[Dict[str, Any]] = []

    async def expect(self, op: str, timeout_s: float = 15.0) -> Dict[str, Any]:
        """The next pushed frame with ``op``; frames before it are recorded, not lost."""
        for f in self.frames:
            if f.get("op") == op and not f.get("_taken"):
                f["_taken"] = True
                return f
        while True:
            frame = await self.client.next_frame(timeout_s=timeout_s)
            self.frames.append(frame)
            if frame.get("op") == op:
                frame["_taken"] = True
                return frame

    async def settle(self) -> List[Dict[str, Any]]:
        """Record what has been pushed so far (after a ping round trip) plus queued events."""
        self.frames.extend(await pushed(self.client))
        while not self.client._events.empty():
            self.frames.append(self.client._events.get_nowait())
        return self.frames

    def ops(self) -> List[str]:
        return [f.get("op") for f in self.frames]


def cli(server: Any, home: Path, *args: str) -> str:
    """Run ``sharon ARGS`` as the person whose config directory is ``home``; stdout."""
    env = dict(os.environ, SHARON_CONFIG_DIR=str(home), SHARON_SERVER=server.ws_url, SHARON_PASSWORD=PASSWORD)
    result = subprocess.run(SHARON + list(args), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def json_lines(text: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def logs_free_of(server: Any, needles: List[str]) -> None:
    """No log line of the server carries any of ``needles`` (identity values, bodies, notes)."""
    leaks = [(n, line) for line in server.raw_lines for n in needles if n and n in line]
    assert leaks == [], leaks[:3]


# -- 1. night: invite, risky post out of hours, CLI queue work ---------------------------------

def test_night_journey_invited_member_risky_post_held_signposted_alerted_and_worked_from_the_cli(
        jserver, run, tmp_path):
    identity = make_identity(501)
    secrets_ = values_of(identity)
    t = run(team(jserver, mods=1, clinicians=1, members=1))
    mod, clin, peer, admin = t.mods[0], t.clinicians[0], t.members[0], t.admin

    async def night() -> Dict[str, Any]:
        member = await invited_member(jserver, clin, t.service_id, identity, prefix="dawn")
        me = Seen(member)
        forum = (await admin.request("create_room", kind="forum", name="Support", public=True,
                                     service_id=t.service_id))["room_id"]
        for c in (member, peer, mod, clin):
            await c.join(forum)
        await member.sync()
        await drain(mod, clin, peer, admin)
        assert (await mod.request("rota", service_id=t.service_id))["anyone_on_duty"] is False

        held = await member.request("thread_create", room_id=forum, txn_id="night-1", title=RISKY_TITLE, body=RISKY)
        assert held["held"] is True and held["held_id"] and "event_id" not in held
        assert any(r.get("phone") == "116 123" for r in held["signpost"]["resources"])  # in the reply too
        sign = await me.expect("signpost")
        assert sign["held"] is True and sign["resources"], sign
        alerts = Seen(mod)
        alert = await alerts.expect("alert")
        assert alert["route"] == "fallback" and alert["item"]["ref"] == held["held_id"]
        assert alert["item"]["subject_user"] == member.user_id and alert["item"]["high_risk"] is True
        # a peer sees nothing of it: no thread, no alert, no signpost
        threads = (await peer.request("threads", room_id=forum))
        assert RISKY_TITLE not in json.dumps(threads)
        assert not any(e.get("content", {}).get("title") == RISKY_TITLE for e in await all_history(peer, forum))
        assert {"alert", "signpost"}.isdisjoint(f.get("op") for f in await pushed(peer))
        # the author can still read their own held post
        mine = (await member.request("held_mine"))["held"]
        assert [(h["held_id"], h["status"]) for h in mine] == [(held["held_id"], "held")]
        return {"member": member, "me": me, "forum": forum, "held": held}

    j = run(night(), 60)
    member, me, forum, held = j["member"], j["me"], j["forum"], j["held"]

    # the moderator works the queue from the CLI: on duty, list, claim, reject with a reason
    home = tmp_path / "mod"
    cli(jserver, home, "login", mod.pseudonym)
    assert "on duty" in cli(jserver, home, "duty", "on", t.service_id)
    listing = cli(jserver, home, "queue", "--service", t.service_id, "--once").splitlines()
    [line] = [x for x in listing if "premod" in x]
    assert "risk_to_self" in line and line.split()[0].endswith("!")  # high risk, first in the queue
    item_id = line.split()[-1]
    assert item_id.startswith("tq_")
    assert "claimed" in cli(jserver, home, "queue", "claim", item_id)
    waiting = json_lines(cli(jserver, home, "held", "--service", t.service_id))
    assert [(h["held_id"], h["author"]) for h in waiting] == [(held["held_id"], member.user_id)]
    reason = "Thank you for telling us. Please message the duty team directly so we can help tonight."
    rejected = json_lines(cli(jserver, home, "held-reject", held["held_id"], reason, "--rule", "stay-safe"))
    assert rejected == [{"held_id": held["held_id"], "status": "rejected"}]

    async def after_reject() -> None:
        back = await me.expect("held_rejected")
        assert back["reason"] == reason and back["rule"]["id"] == "stay-safe"
        assert back["content"]["body"] == RISKY  # returned to its author, to edit and send again
        # the decision closed the queue item (moderation -> triage resolve_ref)
        items = (await mod.request("queue", service_id=t.service_id))["items"]
        assert item_id not in [i["item_id"] for i in items]
        # a moderator on duty now: the resubmitted post goes up and raises a live alert
        await drain(mod)
        again = await member.request("thread_create", room_id=forum, txn_id="night-2", title=RISKY_TITLE,
                                     body=RISKY + " but I will talk to someone")
        assert not again.get("held") and again["event_id"]
        alert = await Seen(mod).expect("alert")
        assert alert["route"] == "on_duty" and alert["item"]["event_id"] == again["event_id"]
        assert (await me.expect("signpost"))["held"] is False  # risk to self: signposted while on duty too
        seen = [e for e in await all_history(peer, forum) if e["type"] == "ps.thread"]
        assert [e["event_id"] for e in seen] == [again["event_id"]]
        j["risk_event"] = again["event_id"]

    run(after_reject(), 60)
    listing = [x for x in cli(jserver, home, "queue", "--service", t.service_id, "--once").splitlines()
               if "risk" in x]
    [line] = listing
    risk_item = line.split()[-1]
    cli(jserver, home, "queue", "claim", risk_item)
    assert "resolved: member_supported" in cli(jserver, home, "queue", "resolve", risk_item, "member_supported",
                                               "--note", "called them")
    assert "risk_to_self" not in cli(jserver, home, "queue", "--service", t.service_id, "--once")

    async def privacy() -> None:
        # nobody but staff ever got a vault value: not the member, not their peer
        for c in (member, peer):
            frames = await Seen(c).settle() if c is peer else await me.settle()
            assert contains_any(frames, secrets_) == []
            assert contains_any(await all_history(c, forum), secrets_) == []
        assert contains_any(await peer.request("search", query="pills"), secrets_) == []
        await member.close()
        await t.close()

    run(privacy(), 60)
    logs_free_of(jserver, [*secrets_, RISKY, RISKY_TITLE, reason])


def test_a_member_at_a_terminal_is_signposted_and_told_their_post_is_held(jserver, run, tmp_path):
    """``sharon send`` of a risky message at night: the held reply is not a crash, the crisis
    lines are printed, and the calm message after it is published as usual."""
    t = run(team(jserver, mods=1, members=1))
    member = t.members[0]
    room = run(t.admin.request("create_room", kind="chat", name="Late", public=True,
                               service_id=t.service_id))["room_id"]
    run(member.join(room))
    home = tmp_path / "member"
    cli(jserver, home, "login", member.pseudonym)
    env = dict(os.environ, SHARON_CONFIG_DIR=str(home), SHARON_SERVER=jserver.ws_url, SHARON_PASSWORD=PASSWORD)
    done = subprocess.run(SHARON + ["send", room, RISKY], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("h_")  # the held post's ID, not an event ID
    assert "held for review" in done.stderr and "Samaritans: 116 123" in done.stderr
    assert (run(Seen(t.mods[0]).expect("alert")))["route"] == "fallback"
    calm = cli(jserver, home, "send", room, "thank you, I will ring them").strip()
    assert calm.startswith("$")
    # the same for a forum thread posted from the terminal
    forum = run(t.admin.request("create_room", kind="forum", name="Board", public=True,
                                service_id=t.service_id))["room_id"]
    run(member.join(forum))
    thread = subprocess.run(SHARON + ["forum-new", forum, RISKY_TITLE, RISKY], env=env, capture_output=True,
                            text=True, timeout=60)
    assert thread.returncode == 0, thread.stderr
    assert thread.stdout.strip().startswith("h_") and "Samaritans: 116 123" in thread.stderr
    run(t.close())


# -- 2. a report, observation, card, hide, mute, appeal --------------------------------------

def test_report_observe_card_hide_mute_appeal_journey(jserver, run):
    async def scenario() -> None:
        t = await team(jserver, mods=2, members=3)
        m1, m2 = t.mods
        author, reporter, bystander = t.members
        room = (await t.admin.request("create_room", kind="chat", name="Evening", public=True,
                                      service_id=t.service_id))["room_id"]
        for c in (author, reporter, bystander):
            await c.join(room)
        await drain(*t.everyone())
        a_seen, r_seen = Seen(author), Seen(reporter)

        body = "nobody here cares about you, just go away"
        post = (await author.send(room, body, txn_id="j2-1"))["event_id"]
        report = await reporter.request("report", room_id=room, event_id=post, category="abuse", note=NOTE)
        assert report["status"] == "open"

        # the moderator observes without appearing in the room
        before = {r["room_id"]: r["members"] for r in await bystander.rooms()}[room]
        observed = await m1.request("moderate_join", room_id=room)
        assert observed["visible"] is False and "moderated" in observed["notice"]
        await m1.sync()
        assert {r["room_id"]: r["members"] for r in await bystander.rooms()}[room] == before
        assert not any(e["type"] == "m.room.member" and e["state_key"] == m1.user_id
                       for e in await all_history(bystander, room))
        items = [i for i in (await m1.request("queue", service_id=t.service_id))["items"] if i["event_id"] == post]
        [item] = items
        assert item["report_count"] == 1 and item["reporters"][0]["reporter"] == reporter.user_id
        assert item["reporters"][0]["note"] == NOTE  # staff see who reported and why
        await m1.request("queue_claim", item_id=item["item_id"])

        card = await m1.request("member_card", user_id=author.user_id, room_id=room)
        assert card["pseudonym"] == author.pseudonym and card["role"] == "member"
        assert "sanctions" in card and "recent_flags" in card and card["has_identity"] is False
        assert card["open_items"] == 1 and card["queue"][0]["item_id"] == item["item_id"]
        assert card["queue"][0]["report_count"] == 1 and "reporters" not in card["queue"][0]
        assert NOTE not in json.dumps(card) and reporter.user_id not in json.dumps(card)

        # hide the post and mute the author, citing a rule
        await m1.request("mod_hide", event_id=post, rule="be-kind", reason="This was hurtful to another member.")
        told = await a_seen.expect("moderated")
        assert told["action"] == "hide" and told["rule"]["id"] == "be-kind" and told["event_id"] == post
        assert "hurtful" in told["notice"]
        peer_view = [e for e in (await bystander.history(room))["events"] if e["event_id"] == post]
        assert peer_view and peer_view[0]["content"]["body"] != body and peer_view[0]["moderation"]["hidden"]
        staff_view = [e for e in (await m1.history(room))["events"] if e["event_id"] == post]
        assert staff_view[0]["content"]["body"] == body and staff_view[0]["moderation"]["hidden"] is True

        until = int(time.time() * 1000) + 3_600_000
        muted = await m1.request("sanction", user_id=author.user_id, kind="mute", rule="be-kind",
                                 reason="The words were unkind to another member.", service_id=t.service_id,
                                 until_ts=until)
        notice = (await a_seen.expect("sanction"))["sanction"]
        assert notice["kind"] == "mute" and notice["rule"]["id"] == "be-kind" and "appeal" in notice["notice"]
        assert "issued_by" not in notice
        with pytest.raises(Muted):
            await author.send(room, "let me explain", txn_id="j2-2")

        # the case closes: the reporter learns the outcome, anonymously
        resolved = await m1.request("queue_resolve", item_id=item["item_id"], outcome="action_taken")
        assert resolved["reporters_told"] == 1
        outcome = await r_seen.expect("report_outcome")
        assert outcome["report_id"] == report["report_id"] and outcome["outcome"] == "action_taken"
        assert m1.user_id not in json.dumps(outcome) and m1.pseudonym not in json.dumps(outcome)
        [mine] = (await reporter.request("my_reports"))["reports"]
        assert (mine["status"], mine["outcome"]) == ("closed", "action_taken")

        # the author appeals; the issuer may not decide it; a different moderator overturns it
        appeal = await author.request("appeal", sanction_id=muted["sanction_id"], text="I was upset, I am sorry.")
        queued = [i for i in (await m2.request("queue", service_id=t.service_id))["items"]
                  if i["ref"] == appeal["appeal_id"]]
        assert [i["kinds"] for i in queued] == [["appeal"]]
        with pytest.raises(SameModerator):
            await m1.request("appeal_decide", appeal_id=appeal["appeal_id"], outcome="overturned", reason="ok")
        decided = await m2.request("appeal_decide", appeal_id=appeal["appeal_id"], outcome="overturned",
                                   reason="An apology was made; the hide is enough.")
        assert decided["sanction_lifted"] is True
        verdict = await a_seen.expect("appeal_decided")
        assert verdict["outcome"] == "overturned"
        assert appeal["appeal_id"] not in [i["ref"] for i in
                                           (await m2.request("queue", service_id=t.service_id))["items"]]
        assert (await author.send(room, "thank you", txn_id="j2-3"))["event_id"]

        # the audit log has every decision, with the acting moderator
        entries = (await t.admin.request("audit_query", member=author.user_id, limit=100))["entries"]
        acted = {(e["action"], e["actor"]) for e in entries}
        assert {("triage.report", reporter.user_id), ("moderation.hide", m1.user_id),
                ("moderation.mute", m1.user_id), ("appeal.create", author.user_id),
                ("appeal.decide", m2.user_id)} <= acted, acted

        # the reported member never learns who reported them, nor which moderator acted
        # (pushes, the author's view of the moderated post, their sanctions; the room's own
        # membership events naturally name its members, the reporter among them)
        frames = [f for f in await a_seen.settle() if "op" in f or f.get("event_id") == post]
        frames.extend(e for e in await all_history(author, room) if e["event_id"] == post)
        frames.extend((await author.request("my_sanctions"))["sanctions"])
        assert {"moderated", "sanction", "appeal_decided"} <= {f.get("op") for f in frames}
        for f in frames:
            text = json.dumps(f, default=str)
            for secret in (reporter.user_id, reporter.pseudonym, NOTE, report["report_id"], m1.user_id,
                           m1.pseudonym, m2.user_id, m2.pseudonym):
                assert secret not in text, (secret, f)
        await t.close()

    run(scenario(), 90)
    logs_free_of(jserver, [NOTE, "nobody here cares about you"])


# -- 3. unmasking with a second approver, verified in the audit chain -------------------------

def test_unmask_journey_is_audited_and_the_chain_verifies_after_the_server_stops(server_factory, run):
    srv = server_factory(name="unmask-journey")
    identity = make_identity(777)
    secrets_ = values_of(identity)

    async def scenario() -> Dict[str, Any]:
        admin = await user(srv, "keeper")
        grant_admin(srv, admin.pseudonym)
        clin, mod = await user(srv, "heron"), await user(srv, "owl")
        service = (await admin.request("create_service", name="Perinatal"))["service_id"]
        for c, role in ((clin, "clinician"), (mod, "moderator")):
            await admin.request("service_add_member", service_id=service, user_id=c.user_id, role=role)
        member = await invited_member(srv, clin, service, identity, prefix="quiet")
        m_seen = Seen(member)
        await member.sync()
        await mod.sync()
        asked = await clin.request("unmask_request", service_id=service, user_id=member.user_id,
                                   reason_code="risk_to_life", reason="disclosed a plan and stopped replying")
        assert asked["status"] == "pending" and contains_any(asked, secrets_) == []
        pending = await Seen(mod).expect("unmask_pending")
        assert pending["request"]["request_id"] == asked["request_id"] and contains_any(pending, secrets_) == []
        approved = await mod.request("unmask_approve", request_id=asked["request_id"])
        assert approved["status"] == "approved" and approved["decided_by"] == mod.user_id
        seen = await clin.request("unmask_view", request_id=asked["request_id"])
        assert Identity.parse(seen["identity"]) == Identity.parse(identity)
        # the member was never shown anything of this
        assert contains_any(await m_seen.settle(), secrets_) == []
        assert "unmask" not in json.dumps(m_seen.frames)
        out = {"member": member.user_id, "clin": clin.user_id, "mod": mod.user_id,
               "request_id": asked["request_id"]}
        for c in (admin, clin, mod, member):
            await c.close()
        return out

    who = run(scenario(), 60)
    srv.stop()
    logs_free_of(srv, secrets_)
    env = {k: v for k, v in os.environ.items() if k != "SHARON_DATABASE_URL"}
    d = ["--data-dir", str(srv.data_dir)]
    verify = subprocess.run([sys.executable, "-m", "sharon_server", "audit", "verify", *d], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert "entries checked" in verify.stdout
    export = subprocess.run([sys.executable, "-m", "sharon_server", "audit", "export", *d, "--member", who["member"]],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    entries = [json.loads(x) for x in export.stdout.splitlines()]
    trail = [(e["action"], e["actor"]) for e in entries if e["action"].startswith("unmask.")]
    assert trail == [("unmask.request", who["clin"]), ("unmask.approve", who["mod"]), ("unmask.view", who["clin"])]
    assert all(e["details"].get("request_id") == who["request_id"] for e in entries
               if e["action"].startswith("unmask."))
    assert contains_any(entries, secrets_) == []


# -- 4. a comment on a member's wall --------------------------------------------------------

def test_a_wall_comment_is_reported_observed_and_hidden_from_peers(jserver, run):
    """Reports, observation and hiding work on walls too (not only chat and forums)."""
    async def scenario() -> None:
        t = await team(jserver, mods=1, members=3)
        mod = t.mods[0]
        owner, commenter, friend = t.members
        wall = (await owner.request("wall_open", service_id=t.service_id))["room_id"]
        for c in (commenter, friend):
            await c.join(wall)
        post = (await owner.request("wall_post", room_id=wall, txn_id="w-1", body="Two weeks without a drink"))
        unkind = "qxunkind: that will never last, you always fail"
        comment = await commenter.request("comment", room_id=wall, txn_id="w-2", post_id=post["event_id"],
                                          body=unkind)
        got = await owner.request("report", room_id=wall, event_id=comment["event_id"], category="abuse")
        assert got["status"] == "open"
        [item] = [i for i in (await mod.request("queue", service_id=t.service_id))["items"]
                  if i["event_id"] == comment["event_id"]]
        assert item["subject_user"] == commenter.user_id and item["room_id"] == wall
        await mod.request("moderate_join", room_id=wall)  # observe the wall without joining it
        await mod.request("mod_hide", event_id=comment["event_id"], rule="be-kind", reason="Unkind comment.")
        listed = await friend.request("comments", room_id=wall, post_id=post["event_id"])
        assert unkind not in json.dumps(listed)
        staff = await mod.request("comments", room_id=wall, post_id=post["event_id"])
        assert unkind in json.dumps(staff)
        # the observer sees the room's media too (listing and download), but cannot upload there
        from tests.test_media import PNG, fetch, upload
        status, up = upload(jserver, owner.token, wall, PNG)
        assert status == 200, up
        listed_media = (await mod.request("media", room_id=wall))["media"]
        assert [m["hash"] for m in listed_media] == [up["hash"]]
        status, _, data = fetch(jserver, mod.token, wall, up["hash"])
        assert status == 200 and data == PNG
        assert upload(jserver, mod.token, wall, PNG + b"x")[0] == 403
        await t.close()

    run(scenario(), 60)


# -- 5. the same night, in the chat TUI --------------------------------------------------------

def test_in_sharon_chat_a_held_risky_post_shows_crisis_lines_then_the_moderators_answer(jserver, run):
    """``sharon chat`` reads pushed frames: the signposting and the held notice appear in the
    status line when a risky message is held, and the moderator's rejection when it comes."""
    from clients.cli.chat import ChatApp
    from textual.widgets import Input

    async def scenario() -> None:
        t = await team(jserver, mods=1, members=1)
        mod, member = t.mods[0], t.members[0]
        room = (await t.admin.request("create_room", kind="chat", name="Small hours", public=True,
                                      service_id=t.service_id))["room_id"]
        await member.join(room)
        app = ChatApp(member, open_room="Small hours")
        async with app.run_test(size=(140, 30)) as pilot:
            await app.wait_until(lambda: app.current == room)
            app.query_one("#input", Input).value = RISKY
            await pilot.press("enter")
            await app.wait_until(lambda: "Held for review" in app.status and "Samaritans" in app.status)
            [held] = (await mod.request("held_list", service_id=t.service_id))["held"]
            await mod.request("held_reject", held_id=held["held_id"], rule="stay-safe",
                              reason="Please ring the duty line tonight; we are here.")
            await app.wait_until(lambda: "duty line" in app.status)
        await t.close()

    run(scenario(), 60)


def test_notice_lines_for_the_cli():
    """What ``sharon chat`` and ``sharon tail`` show for each member notice; other frames: nothing."""
    from clients.cli.main import notice_of

    sign = {"op": "signpost", "message": "It sounds hard.", "resources": [
        {"name": "Samaritans", "phone": "116 123", "hours": "24/7"}, {"name": "SHOUT", "text": "85258"}]}
    assert notice_of(sign) == "It sounds hard.   Samaritans: 116 123; 24/7   SHOUT: 85258"
    assert notice_of({"op": "held_rejected", "notice": "Not published.\nThe reason: x"}) == \
        "Not published. \u23ce The reason: x"
    assert notice_of({"op": "sanction", "sanction": {"notice": "Paused until 9pm."}}) == "Paused until 9pm."
    assert notice_of({"op": "report_outcome", "message": "Thank you."}) == "Thank you."
    assert notice_of({"op": "appeal_decided"}) == "appeal decided"
    for other in ({"op": "typing", "user_ids": []}, {"op": "alert"}, None, {}):
        assert notice_of(other) == ""


def test_in_sharon_chat_a_post_hidden_by_a_moderator_disappears_from_a_peers_screen(jserver, run):
    """A peer watching the room in ``sharon chat`` stops seeing a post once a moderator hides it
    (the moderator observes without joining, so only the ``moderation`` push tells the room)."""
    from clients.cli.chat import ChatApp

    async def scenario() -> None:
        t = await team(jserver, mods=1, members=2)
        mod, (author, peer) = t.mods[0], t.members
        room = (await t.admin.request("create_room", kind="chat", name="Quiet room", public=True,
                                      service_id=t.service_id))["room_id"]
        for c in (author, peer):
            await c.join(room)
        await mod.request("moderate_join", room_id=room)
        unkind = "qxcruel: you are a burden to everyone"
        post = (await author.send(room, unkind, txn_id="tui-1"))["event_id"]
        app = ChatApp(peer, open_room="Quiet room")
        async with app.run_test(size=(140, 30)):
            await app.wait_until(lambda: any(line.endswith(unkind) for line in app.log_widget.lines()))
            await mod.request("mod_hide", event_id=post, rule="be-kind", reason="Hurtful.")
            await app.wait_until(lambda: not any(unkind in line for line in app.log_widget.lines()))
        await t.close()

    run(scenario(), 60)


def test_a_post_hidden_by_reports_out_of_hours_comes_back_when_the_review_finds_nothing(jserver, run):
    """Hidden *pending review*: three reports hide it at night; the moderator's ``no_action``
    shows it again (the reporters are told), while a moderator's own hide would stay."""
    async def scenario() -> None:
        t = await team(jserver, mods=1, members=4)
        mod = t.mods[0]
        author, *reporters = t.members
        room = (await t.admin.request("create_room", kind="chat", name="Night", public=True,
                                      service_id=t.service_id))["room_id"]
        for c in t.members:
            await c.join(room)
        body = "qxfine: I am proud of my recovery, here is my day"
        post = (await author.send(room, body, txn_id="rh-1"))["event_id"]
        for r in reporters:
            await r.request("report", room_id=room, event_id=post, category="other")
        viewer = reporters[0]
        [seen] = [e for e in (await viewer.history(room))["events"] if e["event_id"] == post]
        assert seen["content"]["body"] != body  # hidden pending review
        [item] = [i for i in (await mod.request("queue", service_id=t.service_id))["items"] if i["event_id"] == post]
        assert item["hidden"] is True and item["report_count"] == 3
        done = await mod.request("queue_resolve", item_id=item["item_id"], outcome="no_action")
        assert done["reporters_told"] == 3 and done["unhidden"] is True
        [seen] = [e for e in (await viewer.history(room))["events"] if e["event_id"] == post]
        assert seen["content"]["body"] == body and not seen.get("moderation", {}).get("hidden")
        # a moderator's own hide is not undone by a later no_action review
        again = (await author.send(room, body + " again", txn_id="rh-2"))["event_id"]
        await mod.request("mod_hide", event_id=again, rule="be-kind", reason="Checking this one.")
        for r in reporters:
            await r.request("report", room_id=room, event_id=again, category="other")
        [item] = [i for i in (await mod.request("queue", service_id=t.service_id))["items"]
                  if i["event_id"] == again]
        assert (await mod.request("queue_resolve", item_id=item["item_id"], outcome="no_action"))["unhidden"] is False
        [seen] = [e for e in (await viewer.history(room))["events"] if e["event_id"] == again]
        assert seen["content"]["body"] != body + " again"
        await t.close()

    run(scenario(), 60)
