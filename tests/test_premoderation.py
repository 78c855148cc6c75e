"""Pre-moderation against the real server: held posts reach nobody but their author and
staff until approved; a rejected post comes back with its reason and content."""

from __future__ import annotations

import pytest

from protocol.errors import AlreadyDecided, BadField, Forbidden, NotFound, UnknownRule
from tests.conftest import module_server
from tests.helpers import all_history
from tests.moderation_helpers import in_cast, next_of, push, txn

pytestmark = pytest.mark.integration


mod_server = module_server("premod")


def _bodies(events):
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


def test_new_members_posts_are_invisible_to_peers_until_approved(mod_server, run):
    async def scenario(c):
        mod, alice, bob = c.mods[0], c.members[0], c.members[1]
        first = txn()
        text = f"my first post about quokkaberry, hi @{bob.pseudonym}"
        held = await alice.send(c.room, text, txn_id=first)
        assert held["held"] is True and held["reason"] == "premoderation" and held["notice"]
        again = await alice.send(c.room, text, txn_id=first)
        assert again["held_id"] == held["held_id"] and again["duplicate"] is True

        # peers: nothing live (the moderator's later message is the next thing they get),
        # nothing in history, nothing in search
        await mod.send(c.room, "welcome everyone")
        assert (await next_of(bob, "m.room.message"))["content"]["body"] == "welcome everyone"
        assert text not in _bodies(await all_history(bob, c.room))
        found = await bob.request("search", query="quokkaberry")
        assert found["results"] == []
        assert (await bob.request("notifications"))["notifications"] == []  # the mention waits too

        # the author sees their own held post; staff see it in the service's queue
        mine = (await alice.request("held_mine"))["held"]
        assert [(h["held_id"], h["status"], h["content"]["body"]) for h in mine] == \
            [(held["held_id"], "held", text)]
        assert "author" not in mine[0]
        with pytest.raises(Forbidden):
            await bob.request("held_list", service_id=c.service)
        triage = (await mod.request("queue", service_id=c.service))["items"]
        assert [i["ref"] for i in triage if "premod" in i["kinds"]] == [held["held_id"]]
        queue = (await mod.request("held_list", service_id=c.service))["held"]
        assert [(h["held_id"], h["author"], h["author_pseudonym"]) for h in queue] == \
            [(held["held_id"], alice.user_id, alice.pseudonym)]

        # approved: published as the author's event, delivered, searchable, author told
        with pytest.raises(Forbidden):
            await bob.request("held_approve", held_id=held["held_id"])
        approved = await mod.request("held_approve", held_id=held["held_id"])
        note = await push(alice, "held_approved")
        left = (await mod.request("queue", service_id=c.service))["items"]
        assert held["held_id"] not in [i["ref"] for i in left]  # deciding closes the triage item
        assert note["event_id"] == approved["event_id"] and note["held_id"] == held["held_id"]
        live = await next_of(bob, "m.room.message")
        assert (live["event_id"], live["sender"], live["content"]["body"]) == \
            (approved["event_id"], alice.user_id, text)
        mentions = (await bob.request("notifications"))["notifications"]
        assert [(n["reason"], n["event_id"]) for n in mentions] == [("mention", approved["event_id"])]
        assert [r["event"]["event_id"] for r in (await bob.request("search", query="quokkaberry"))["results"]] \
            == [approved["event_id"]]
        # a retry of the original send now finds the published event
        retry = await alice.send(c.room, text, txn_id=first)
        assert retry["event_id"] == approved["event_id"] and retry["duplicate"] is True
        with pytest.raises(AlreadyDecided):
            await c.mods[1].request("held_approve", held_id=held["held_id"])

        # one approved post was the quota: the next one goes straight through
        second = await alice.send(c.room, "second post", txn_id=txn())
        assert "held" not in second and second["event_id"]
        # staff are never pre-moderated, and bob (new) is
        assert (await bob.send(c.room, "hello", txn_id=txn()))["held"] is True

    in_cast(run, scenario, mod_server, {"premoderation": "new_members", "premod_first_posts": 1})


def test_rejected_post_returns_with_reason_and_resubmission_is_held_again(mod_server, run):
    async def scenario(c):
        mod, alice, bob = c.mods[0], c.members[0], c.members[1]
        # pre-moderation is off for the service; staff pre-moderate alice's next post
        with pytest.raises(Forbidden):
            await bob.request("premod_member", service_id=c.service, user_id=alice.user_id, posts=1)
        await mod.request("premod_member", service_id=c.service, user_id=alice.user_id, posts=1)
        held = await alice.request("thread_create", room_id=c.room, txn_id=txn(), title="About me",
                                   body="I live at 12 Acacia Road")
        assert held["held"] is True and held["reason"] == "premod_member"
        assert (await bob.request("threads", room_id=c.room))["threads"] == []

        with pytest.raises(UnknownRule) as bad:
            await mod.request("held_reject", held_id=held["held_id"], rule="no-such-rule", reason="x")
        assert bad.value.field == "rule" and "no-identifying-details" in bad.value.reason
        with pytest.raises(NotFound):
            await mod.request("held_reject", held_id="h_nothing", reason="x")
        await mod.request("held_reject", held_id=held["held_id"], rule="no-identifying-details",
                          reason="Please leave out your address.")
        back = await push(alice, "held_rejected")
        assert back["held_id"] == held["held_id"] and back["reason"] == "Please leave out your address."
        assert back["type"] == "ps.thread"
        assert back["content"] == {"title": "About me", "body": "I live at 12 Acacia Road"}
        assert back["rule"]["id"] == "no-identifying-details" and "address" in back["notice"]
        mine = (await alice.request("held_mine"))["held"]
        assert mine[0]["status"] == "rejected" and mine[0]["decision_reason"] == "Please leave out your address."

        # a resubmission is a new send: still pre-moderated (a rejection does not count)
        again = await alice.request("thread_create", room_id=c.room, txn_id=txn(), title="About me",
                                    body="I live nearby")
        assert again["held"] is True and again["held_id"] != held["held_id"]
        approved = await c.mods[1].request("held_approve", held_id=again["held_id"])
        threads = (await bob.request("threads", room_id=c.room))["threads"]
        assert [t["event_id"] for t in threads] == [approved["event_id"]]
        # the quota of one is used up: the reply goes straight through; reactions never held
        reply = await alice.request("thread_reply", room_id=c.room, txn_id=txn(),
                                    thread_id=approved["event_id"], body="thanks")
        assert "held" not in reply

    in_cast(run, scenario, mod_server, kind="forum")


def test_premoderation_all_holds_every_member_and_settings_are_checked(mod_server, run):
    async def scenario(c):
        alice = c.members[0]
        for _ in range(2):
            assert (await alice.send(c.room, "still held", txn_id=txn()))["held"] is True
        held = (await c.mods[0].request("held_list", service_id=c.service))["held"]
        for h in held:
            await c.mods[0].request("held_approve", held_id=h["held_id"])
        assert (await alice.send(c.room, "and again", txn_id=txn()))["held"] is True
        assert (await c.mods[0].send(c.room, "staff post"))["event_id"]
        to_staff = (await alice.request("create_dm", user_id=c.mods[0].user_id))["room_id"]
        assert "held" not in await alice.send(to_staff, "can we talk?", txn_id=txn())  # staff stay reachable
        with pytest.raises(BadField) as bad:
            await c.admin.request("service_settings", service_id=c.service, settings={"premoderation": "some"})
        assert bad.value.field == "settings.premoderation"
        with pytest.raises(BadField) as bad:
            await c.admin.request("service_settings", service_id=c.service,
                                  settings={"rules": [{"id": "a", "title": "A"}]})
        assert bad.value.field == "settings.rules[0].plain_words"
        rules = (await alice.request("mod_rules", service_id=c.service))["rules"]
        assert "be-kind" in [r["id"] for r in rules]

    in_cast(run, scenario, mod_server, {"premoderation": "all"}, members=1)
