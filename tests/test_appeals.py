"""Appeals against the real server: one per sanction, decided by a different moderator."""

from __future__ import annotations

import time

import pytest

from protocol.errors import AlreadyDecided, AppealExists, Forbidden, Muted, NotFound, SameModerator
from tests.conftest import module_server
from tests.moderation_helpers import cast, in_cast, push, txn

pytestmark = pytest.mark.integration


mod_server = module_server("appeals")


def test_appeal_is_decided_by_a_different_moderator_and_overturning_lifts(mod_server, run):
    async def scenario(c):
        (issuer, other), (alice, bob) = c.mods, c.members
        until = int(time.time() * 1000) + 3600 * 1000
        muted = await issuer.request("sanction", service_id=c.service, user_id=alice.user_id, kind="mute",
                                     rule="be-kind", reason="Rude reply.", until_ts=until)
        await push(alice, "sanction")
        with pytest.raises(NotFound):  # only the sanctioned member appeals
            await bob.request("appeal", sanction_id=muted["sanction_id"], text="she is nice")
        made = await alice.request("appeal", sanction_id=muted["sanction_id"],
                                   text="I was quoting someone else, not being rude.")
        assert made["sanction_id"] == muted["sanction_id"] and made["notice"]
        with pytest.raises(AppealExists):
            await alice.request("appeal", sanction_id=muted["sanction_id"], text="again")

        with pytest.raises(Forbidden):
            await bob.request("appeals", service_id=c.service)
        listed = (await other.request("appeals", service_id=c.service))["appeals"]
        assert [(a["appeal_id"], a["you_may_decide"]) for a in listed] == [(made["appeal_id"], True)]
        assert (await issuer.request("appeals", service_id=c.service))["appeals"][0]["you_may_decide"] is False

        with pytest.raises(SameModerator):
            await issuer.request("appeal_decide", appeal_id=made["appeal_id"], outcome="overturned", reason="ok")
        with pytest.raises(Forbidden):
            await bob.request("appeal_decide", appeal_id=made["appeal_id"], outcome="overturned", reason="ok")
        with pytest.raises(Muted):
            await alice.send(c.room, "still muted", txn_id=txn())
        decided = await other.request("appeal_decide", appeal_id=made["appeal_id"], outcome="overturned",
                                      reason="The quote was clear from context.")
        assert decided == {"appeal_id": made["appeal_id"], "outcome": "overturned", "sanction_lifted": True}
        told = await push(alice, "appeal_decided")
        assert told["outcome"] == "overturned" and "reversed" in told["notice"]
        assert (await alice.send(c.room, "thank you", txn_id=txn()))["event_id"]
        with pytest.raises(AlreadyDecided):
            await other.request("appeal_decide", appeal_id=made["appeal_id"], outcome="upheld", reason="x")
        mine = (await alice.request("my_sanctions"))["sanctions"][0]
        assert mine["appeal"]["outcome"] == "overturned" and mine["lifted_ts"] is not None
        assert "decided_by" not in mine["appeal"]
        audit = (await c.admin.request("audit_query", member=alice.user_id))["entries"]
        actions = {(e["action"], e["actor"]) for e in audit}
        assert {("moderation.mute", issuer.user_id), ("appeal.create", alice.user_id),
                ("appeal.decide", other.user_id)} <= actions

    in_cast(run, scenario, mod_server)


def test_upheld_appeal_keeps_the_sanction(mod_server, run):
    async def scenario(c):
        (issuer, other), (alice, _bob) = c.mods, c.members
        warned = await issuer.request("sanction", service_id=c.service, user_id=alice.user_id, kind="warn",
                                      rule="no-advertising", reason="Selling.")
        made = await alice.request("appeal", sanction_id=warned["sanction_id"], text="It was free.")
        decided = await other.request("appeal_decide", appeal_id=made["appeal_id"], outcome="upheld",
                                      reason="A link to a shop is advertising.")
        assert decided["sanction_lifted"] is False
        assert (await push(alice, "appeal_decided"))["outcome"] == "upheld"
        assert (await other.request("appeals", service_id=c.service))["appeals"] == []  # none open
        closed = (await other.request("appeals", service_id=c.service, all=True))["appeals"]
        assert closed[0]["outcome"] == "upheld" and closed[0]["decided_by"] == other.user_id

    in_cast(run, scenario, mod_server)


def test_cli_rules_sanctions_and_appeal(mod_server, run, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import PASSWORD, fresh_pseudonym

    script = Path(sys.executable).with_name("sharon")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "clients.cli.main"]
    env = dict(os.environ, SHARON_CONFIG_DIR=str(tmp_path / "cfg"), SHARON_SERVER=mod_server.ws_url,
               SHARON_PASSWORD=PASSWORD)

    def sharon(*args: str) -> str:
        result = subprocess.run(base + list(args), env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout.strip()

    user_id = sharon("register", fresh_pseudonym("climember"))
    c = run(cast(mod_server, members=0))
    run(c.admin.request("service_add_member", service_id=c.service, user_id=user_id))
    assert "be-kind" in [json.loads(line)["id"] for line in sharon("rules", c.service).splitlines()]
    warned = run(c.mods[0].request("sanction", service_id=c.service, user_id=user_id, kind="warn",
                                   rule="be-kind", reason="Unkind words."))
    mine = [json.loads(line) for line in sharon("my-sanctions").splitlines()]
    assert [s["sanction_id"] for s in mine] == [warned["sanction_id"]]
    appeal = json.loads(sharon("appeal", warned["sanction_id"], "I was upset; I apologised."))
    listed = run(c.mods[1].request("appeals", service_id=c.service))["appeals"]
    assert [a["appeal_id"] for a in listed] == [appeal["appeal_id"]]
    # suspended: signed out everywhere, yet the member can still appeal from the CLI
    pseudonym = run(c.mods[0].request("sanctions", service_id=c.service, user_id=user_id))["sanctions"][0]["pseudonym"]
    suspended = run(c.mods[0].request("sanction", service_id=c.service, user_id=user_id, kind="suspend",
                                      rule="be-kind", reason="Cooling off.",
                                      until_ts=int(time.time() * 1000) + 3600_000))
    made = json.loads(sharon("appeal", suspended["sanction_id"], "Please reconsider.", "--signed-out", pseudonym))
    assert made["sanction_id"] == suspended["sanction_id"]
    run(c.close())


def test_moderation_on_postgresql_survives_a_restart(pg_server, run):
    """Held posts, marks, sanctions and appeals on PostgreSQL; in force again after a restart."""
    from clients.client import SharonClient
    from tests.helpers import PASSWORD, all_history

    async def before():
        c = await cast(pg_server, {"premoderation": "new_members", "premod_first_posts": 1})
        (issuer, other), (alice, bob) = c.mods, c.members
        first = txn()
        held = await alice.send(c.room, "hello from postgres", txn_id=first)
        assert (await alice.send(c.room, "hello from postgres", txn_id=first))["held_id"] == held["held_id"]
        approved = await issuer.request("held_approve", held_id=held["held_id"])
        await issuer.request("mod_hide", event_id=approved["event_id"], rule="be-kind", reason="check")
        muted = await issuer.request("sanction", service_id=c.service, user_id=bob.user_id, kind="mute",
                                     rule="be-kind", reason="x", until_ts=int(time.time() * 1000) + 3600_000)
        made = await bob.request("appeal", sanction_id=muted["sanction_id"], text="please")
        with pytest.raises(AppealExists):
            await bob.request("appeal", sanction_id=muted["sanction_id"], text="again")
        await c.close()
        return c, approved["event_id"], made["appeal_id"], alice.pseudonym, bob.pseudonym, other.pseudonym

    c, event_id, appeal_id, alice_name, bob_name, other_name = run(before(), timeout_s=60)
    pg_server.restart()

    async def after():
        bob = await SharonClient.connect(pg_server.ws_url)
        await bob.login(bob_name, PASSWORD)
        with pytest.raises(Muted):
            await bob.send(c.room, "after restart", txn_id=txn())
        seen = next(e for e in await all_history(bob, c.room) if e["event_id"] == event_id)
        assert seen["content"]["body"] == "hidden by a moderator while it is reviewed"
        other = await SharonClient.connect(pg_server.ws_url)
        await other.login(other_name, PASSWORD)
        await other.request("appeal_decide", appeal_id=appeal_id, outcome="overturned", reason="ok")
        # no longer muted: the post is taken (and held, as bob is still a new member)
        assert (await bob.send(c.room, "after restart", txn_id=txn()))["held"] is True
        alice = await SharonClient.connect(pg_server.ws_url)
        await alice.login(alice_name, PASSWORD)
        assert "held" not in await alice.send(c.room, "quota used", txn_id=txn())
        for client in (bob, other, alice):
            await client.close()

    run(after(), timeout_s=60)
