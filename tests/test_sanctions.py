"""Moderator actions on events and sanctions on members, against the real server."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from clients.client import SharonClient
from protocol import moderation as P
from protocol.errors import (
    AppealExists, BadCredentials, BadField, Banned, Forbidden, Muted, NotAuthenticated, NotFound, Suspended, UnknownRule, UnknownToken,
)
from sharon_server.features.moderation import Moderation
from tests.conftest import module_server
from tests.helpers import PASSWORD, all_history
from tests.moderation_helpers import in_cast, next_of, push, txn

pytestmark = pytest.mark.integration

HOUR_MS = 3600 * 1000


mod_server = module_server("sanctions")


def _by_id(events, event_id):
    return next(e for e in events if e["event_id"] == event_id)


def test_hide_unhide_redact_and_content_warning(mod_server, run):
    async def scenario(c):
        mod, alice, bob = c.mods[0], c.members[0], c.members[1]
        sent = await alice.send(c.room, "buy my candles, link in my bio", txn_id=txn())
        await next_of(bob, "m.room.message")
        found = (await bob.request("search", query="candles"))["results"]
        assert [r["event"]["event_id"] for r in found] == [sent["event_id"]]
        with pytest.raises(Forbidden):
            await bob.request("mod_hide", event_id=sent["event_id"], rule="no-identifying-details", reason="x")
        with pytest.raises(UnknownRule) as bad:
            await mod.request("mod_hide", event_id=sent["event_id"], rule="nope", reason="x")
        assert bad.value.field == "rule"
        with pytest.raises(NotFound):
            await mod.request("mod_hide", event_id="$" + "A" * 43, rule="be-kind", reason="x")

        done = await mod.request("mod_hide", event_id=sent["event_id"], rule="no-advertising",
                                 reason="It advertises a shop.")
        assert done["hidden"] is True and done["announced"]
        live = await next_of(bob, P.MOD_HIDE)
        assert live["content"] == {"target": sent["event_id"]}
        told = await push(alice, "moderated")
        assert told["action"] == "hide" and told["rule"]["id"] == "no-advertising"
        assert "advertises a shop" in told["notice"]

        assert (await bob.request("search", query="candles"))["results"] == []
        peer = _by_id(await all_history(bob, c.room), sent["event_id"])
        assert peer["content"] == {"body": P.HIDDEN_TEXT} and peer["moderation"]["hidden"] is True
        assert "reason" not in peer["moderation"]
        own = _by_id(await all_history(alice, c.room), sent["event_id"])
        assert own["content"]["body"] == "buy my candles, link in my bio"
        assert own["moderation"]["reason"] == "It advertises a shop."
        staff = _by_id(await all_history(c.mods[1], c.room), sent["event_id"])
        assert staff["content"]["body"] == "buy my candles, link in my bio"
        assert staff["moderation"]["hidden"] is True and staff["moderation"]["by"] == mod.user_id

        # resume replay carries the placeholder too
        fresh = await SharonClient.connect(mod_server.ws_url)
        await fresh.login(bob.pseudonym, PASSWORD)
        await fresh.sync(since=sent["pos"] - 1)
        replayed = await next_of(fresh, "m.room.message")
        assert replayed["event_id"] == sent["event_id"] and replayed["content"]["body"] == P.HIDDEN_TEXT
        await fresh.close()

        await mod.request("mod_unhide", event_id=sent["event_id"], reason="Edited by staff request")
        assert _by_id(await all_history(bob, c.room), sent["event_id"])["content"]["body"] \
            == "buy my candles, link in my bio"

        # a redaction is for everyone but staff, the author included, and permanent
        await mod.request("mod_redact", event_id=sent["event_id"], rule="no-advertising", reason="Advertising")
        await mod.request("mod_unhide", event_id=sent["event_id"], reason="try")
        for viewer in (alice, bob):
            assert _by_id(await all_history(viewer, c.room), sent["event_id"])["content"] == \
                {"body": P.REDACTED_TEXT}
        assert _by_id(await all_history(mod, c.room), sent["event_id"])["moderation"]["redacted"] is True

        # content warnings mark the event for everyone; the live event names the category
        other = await alice.send(c.room, "a hard night", txn_id=txn())
        with pytest.raises(BadField) as bad:
            await mod.request("mod_content_warning", event_id=other["event_id"], category="gory")
        assert bad.value.field == "category"
        await mod.request("mod_content_warning", event_id=other["event_id"], category="self_harm")
        cw = await next_of(bob, P.MOD_CW)
        assert cw["content"] == {"target": other["event_id"], "category": "self_harm"}
        seen = _by_id(await all_history(bob, c.room), other["event_id"])
        assert seen["content_warning"] == "self_harm" and seen["content"]["body"] == "a hard night"

    in_cast(run, scenario, mod_server)


def test_mute_refuses_posts_until_lifted_and_warn_notice(mod_server, run):
    async def scenario(c):
        mod, alice, bob = c.mods[0], c.members[0], c.members[1]
        with pytest.raises(Forbidden):
            await bob.request("sanction", service_id=c.service, user_id=alice.user_id, kind="warn",
                              rule="be-kind", reason="x")
        with pytest.raises(BadField) as bad:
            await mod.request("sanction", service_id=c.service, user_id=alice.user_id, kind="mute",
                              rule="be-kind", reason="x")
        assert bad.value.field == "until_ts"
        with pytest.raises(BadField) as bad:
            await mod.request("sanction", service_id=c.service, user_id=alice.user_id, kind="shout",
                              rule="be-kind", reason="x")
        assert bad.value.field == "kind"
        with pytest.raises(UnknownRule):
            await mod.request("sanction", service_id=c.service, user_id=alice.user_id, kind="warn",
                              rule="rule-9", reason="x")
        with pytest.raises(Forbidden):  # server-wide sanctions are for server admins
            await mod.request("sanction", user_id=alice.user_id, kind="warn", rule="be-kind", reason="x")

        until = int(time.time() * 1000) + HOUR_MS
        muted = await mod.request("sanction", service_id=c.service, user_id=alice.user_id, kind="mute",
                                  rule="be-kind", reason="The argument with another member got personal.",
                                  until_ts=until)
        note = (await push(alice, "sanction"))["sanction"]
        assert note["kind"] == "mute" and note["until_ts"] == until and "issued_by" not in note
        assert "paused your posting in Perinatal until" in note["notice"] and "appeal once" in note["notice"]
        with pytest.raises(Muted) as refused:
            await alice.send(c.room, "but listen", txn_id=txn())
        assert "until" in refused.value.reason
        to_staff = (await alice.request("create_dm", user_id=c.mods[1].user_id))["room_id"]
        assert (await alice.send(to_staff, "can we talk?", txn_id=txn()))["event_id"]  # staff stay reachable
        # others are not affected; the member sees their sanctions, staff see who issued them
        assert (await bob.send(c.room, "hi", txn_id=txn()))["event_id"]
        mine = (await alice.request("my_sanctions"))["sanctions"]
        assert [s["sanction_id"] for s in mine] == [muted["sanction_id"]] and "issued_by" not in mine[0]
        listed = (await c.mods[1].request("sanctions", service_id=c.service, user_id=alice.user_id))["sanctions"]
        assert listed[0]["issued_by"] == mod.user_id and listed[0]["pseudonym"] == alice.pseudonym
        with pytest.raises(Forbidden):
            await bob.request("sanctions", service_id=c.service)
        card = await c.mods[1].request("member_card", service_id=c.service, user_id=alice.user_id)
        assert [s["sanction_id"] for s in card["sanctions"]] == [muted["sanction_id"]]

        await c.mods[1].request("sanction_lift", sanction_id=muted["sanction_id"], reason="Talked it through.")
        assert (await push(alice, "sanction_lifted"))["sanction_id"] == muted["sanction_id"]
        assert (await alice.send(c.room, "sorry all", txn_id=txn()))["event_id"]
        warned = await mod.request("sanction", service_id=c.service, user_id=bob.user_id, kind="warn",
                                   rule="no-advertising", reason="Please do not sell things here.")
        assert "reminder" in (await push(bob, "sanction"))["sanction"]["notice"]
        assert warned["kind"] == "warn" and (await bob.send(c.room, "ok", txn_id=txn()))["event_id"]

    in_cast(run, scenario, mod_server)


def test_suspended_member_is_signed_out_and_cannot_log_in(mod_server, run):
    async def scenario(c):
        mod, alice = c.mods[0], c.members[0]
        phone = await SharonClient.connect(mod_server.ws_url)
        token = (await phone.login(alice.pseudonym, PASSWORD))["token"]
        until = int(time.time() * 1000) + HOUR_MS
        await mod.request("sanction", service_id=c.service, user_id=alice.user_id, kind="suspend",
                          rule="stay-safe", reason="Sharing a method.", until_ts=until)
        assert (await push(alice, "sanction"))["sanction"]["kind"] == "suspend"
        with pytest.raises(NotAuthenticated):
            await alice.send(c.room, "still here?", txn_id=txn())
        other = await SharonClient.connect(mod_server.ws_url)
        with pytest.raises(Suspended) as refused:
            await other.login(alice.pseudonym, PASSWORD)
        assert "suspended until" in refused.value.reason
        sanction_id = next(w for w in refused.value.reason.replace(";", " ").split() if w.startswith("s_"))
        with pytest.raises(BadCredentials):
            await other.request("appeal_signed_out", pseudonym=alice.pseudonym, password="wrong password",
                                sanction_id=sanction_id, text="x")
        made = await other.request("appeal_signed_out", pseudonym=alice.pseudonym, password=PASSWORD,
                                   sanction_id=sanction_id, text="I was quoting a leaflet.")
        assert made["sanction_id"] == sanction_id
        with pytest.raises(AppealExists):
            await other.request("appeal_signed_out", pseudonym=alice.pseudonym, password=PASSWORD,
                                sanction_id=sanction_id, text="again")
        with pytest.raises(UnknownToken):  # every device was signed out
            await other.auth(token)
        with pytest.raises(NotAuthenticated):
            await phone.request("my_sanctions")
        await other.close()
        await phone.close()

    in_cast(run, scenario, mod_server)


def test_ban_removes_member_and_keeps_them_out(mod_server, run):
    async def scenario(c):
        mod, alice = c.mods[0], c.members[0]
        banned = await mod.request("sanction", service_id=c.service, user_id=alice.user_id, kind="ban",
                                   rule="be-kind", reason="Repeated abuse after warnings.")
        assert banned["rooms_left"] == 2  # the service and its chat room
        assert "removed you from Perinatal" in (await push(alice, "sanction"))["sanction"]["notice"]
        with pytest.raises(Banned):
            await alice.join(c.room)
        with pytest.raises(Banned):
            await c.admin.request("service_add_member", service_id=c.service, user_id=alice.user_id)
        assert c.room not in [r["room_id"] for r in await alice.rooms() if r["membership"] == "join"]
        # she can still log in (a service ban is not a suspension) and appeal
        assert (await alice.request("my_sanctions"))["sanctions"][0]["kind"] == "ban"
        # a server-wide ban (server admins only) also refuses login
        bob = c.members[1]
        await c.admin.request("sanction", user_id=bob.user_id, kind="ban", rule="be-kind", reason="Threats.")
        again = await SharonClient.connect(mod_server.ws_url)
        with pytest.raises(Banned):
            await again.login(bob.pseudonym, PASSWORD)
        await again.close()

    in_cast(run, scenario, mod_server)


def test_expired_sanctions_stop_applying():
    """Pure check of the in-memory index: a mute ends at until_ts without a lift."""
    clock = [1_000]
    ctx = SimpleNamespace(rooms=None, services=None, accounts=None, hub=None, db=None, now_ms=lambda: clock[0],
                          extras={}, audit=None)
    mod = Moderation(ctx)
    row = {"sanction_id": "s_1", "service_id": "!svc:x", "user_id": "@a:x", "kind": "mute", "until_ts": 5_000}
    mod.active = {"@a:x": {"s_1": row}}
    assert mod.is_muted("@a:x", "!svc:x") == 5_000
    assert mod.is_muted("@a:x", "!other:x") is None
    clock[0] = 5_000
    assert mod.is_muted("@a:x", "!svc:x") is None and "@a:x" not in mod.active


def test_hidden_forum_posts_are_placeholders_in_listings(mod_server, run):
    async def scenario(c):
        mod, alice, bob = c.mods[0], c.members[0], c.members[1]
        thread = await alice.request("thread_create", room_id=c.room, txn_id=txn(), title="Shop",
                                     body="candles for sale")
        reply = await alice.request("thread_reply", room_id=c.room, txn_id=txn(), thread_id=thread["event_id"],
                                    body="ten percent off")
        await mod.request("mod_hide", event_id=thread["event_id"], rule="no-advertising", reason="Selling.")
        # the server admin is not in the room: nobody speaks for them, the room gets a push
        done = await c.admin.request("mod_hide", event_id=reply["event_id"], rule="no-advertising", reason="Selling.")
        assert done["announced"] is None
        note = await push(bob, "moderation")
        assert (note["room_id"], note["type"], note["content"]) == (c.room, P.MOD_HIDE, {"target": reply["event_id"]})
        listed = (await bob.request("threads", room_id=c.room))["threads"]
        assert [t["content"]["body"] for t in listed] == [P.HIDDEN_TEXT] and "title" not in listed[0]["content"]
        page = await bob.request("thread", room_id=c.room, thread_id=thread["event_id"])
        assert page["thread"]["content"]["body"] == P.HIDDEN_TEXT
        assert [e["content"] for e in page["replies"]] == [{"thread_id": thread["event_id"], "body": P.HIDDEN_TEXT}]
        staff = (await c.mods[1].request("threads", room_id=c.room))["threads"]
        assert staff[0]["content"]["title"] == "Shop" and staff[0]["moderation"]["hidden"] is True

        # locking reuses the forum's own thread state, citing a rule
        other = await bob.request("thread_create", room_id=c.room, txn_id=txn(), title="Heated", body="...")
        with pytest.raises(UnknownRule):
            await mod.request("mod_lock", room_id=c.room, thread_id=other["event_id"], rule="x", reason="y")
        with pytest.raises(Forbidden):
            await alice.request("mod_lock", room_id=c.room, thread_id=other["event_id"], rule="be-kind", reason="y")
        locked = await mod.request("mod_lock", room_id=c.room, thread_id=other["event_id"], rule="be-kind",
                                   reason="It turned into a pile-on.")
        assert locked["locked"] is True
        with pytest.raises(Forbidden) as refused:
            await alice.request("thread_reply", room_id=c.room, txn_id=txn(), thread_id=other["event_id"], body="!")
        assert "locked" in refused.value.reason

    in_cast(run, scenario, mod_server, kind="forum")


def test_notices_and_rules_are_plain_and_checked():
    """Pure: every sanction kind has a notice naming the rule, the reason and the appeal."""
    rule = P.DEFAULT_RULES[0]
    for kind in P.SANCTION_KINDS:
        text = P.sanction_notice(kind, "Perinatal", rule, "Because.", 1_795_294_800_000 if kind != "warn" else None)
        assert "Because." in text and rule["title"] in text and "appeal once" in text
    assert "until 21 Nov 2026 21:00 UTC" in P.sanction_notice("mute", "Perinatal", rule, "r", 1_795_294_800_000)
    assert [r["id"] for r in P.validate_rules([{"id": " a ", "title": "A", "plain_words": "w"}], "rules")] == ["a"]
    for bad, field in (([], "rules"), ([{"id": "a", "title": "A", "plain_words": "w"}] * 2, "rules[1].id"),
                       ([{"id": "a", "title": "", "plain_words": "w"}], "rules[0].title")):
        with pytest.raises(BadField) as err:
            P.validate_rules(bad, "rules")
        assert err.value.field == field
    from clients.cli.cmd_moderation import until_ms
    assert until_ms("+30", now_ms=1000) == 1000 + 30 * 60_000
    assert until_ms("2026-11-21T21:00") == 1_795_294_800_000
