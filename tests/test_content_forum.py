"""Forums: threads, replies, the thread list, pinned and locked threads, edits, permissions."""

from __future__ import annotations

import pytest

from protocol.errors import BadField, Forbidden, MissingField, NotFound, NotInRoom, TooLarge, UnknownOp
from tests.helpers import user
from tests.test_content_support import close, room_in, service, txn

pytestmark = pytest.mark.integration


def test_threads_replies_and_list_by_latest_activity(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        forum = await room_in(alice, svc, "forum", bob, name="Night feeds")
        t1 = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="Sleep", body="Any tips?")
        t2 = await bob.request("thread_create", room_id=forum, txn_id=txn(), title="Feeding", body="Help")
        t3 = await bob.request("thread_create", room_id=forum, txn_id=txn(), title="Hello", body="Hi all")
        r1 = await bob.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=t1["event_id"], body="Routine")
        await alice.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=t1["event_id"], body="Thanks")
        listed = (await alice.request("threads", room_id=forum))["threads"]
        assert [t["event_id"] for t in listed] == [t1["event_id"], t3["event_id"], t2["event_id"]]
        assert [t["reply_count"] for t in listed] == [2, 0, 0]
        assert listed[0]["content"] == {"title": "Sleep", "body": "Any tips?"}
        assert listed[0]["sender_pseudonym"] == alice.pseudonym and listed[0]["pinned"] is False
        assert listed[0]["last_pos"] > r1["pos"]
        # paging by latest activity
        page1 = await alice.request("threads", room_id=forum, limit=2)
        assert [t["event_id"] for t in page1["threads"]] == [t1["event_id"], t3["event_id"]]
        page2 = await alice.request("threads", room_id=forum, limit=2, before=page1["next"])
        assert [t["event_id"] for t in page2["threads"]] == [t2["event_id"]] and page2["next"] is None
        # one thread with its replies, oldest first, paged
        opened = await bob.request("thread", room_id=forum, thread_id=t1["event_id"], limit=1)
        assert opened["thread"]["content"]["title"] == "Sleep"
        assert [r["content"]["body"] for r in opened["replies"]] == ["Routine"]
        more = await bob.request("thread", room_id=forum, thread_id=t1["event_id"], **{"from": opened["next"]})
        assert [r["content"]["body"] for r in more["replies"]] == ["Thanks"] and more["next"] is None
        # the events are ordinary room events in history
        history = (await bob.history(forum, limit=20))["events"]
        assert {"ps.thread", "ps.reply"} <= {e["type"] for e in history}
        await close(alice, bob, admin)

    run(scenario())


def test_live_delivery_of_threads(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        forum = await room_in(alice, svc, "forum", bob)
        await bob.sync()
        sent = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="Live", body="now")
        while True:
            event = await bob.next_event()
            if event["type"] == "ps.thread":
                break
        assert event["event_id"] == sent["event_id"] and event["content"]["title"] == "Live"
        await close(alice, bob, admin)

    run(scenario())


def test_only_staff_pin_and_lock_and_locked_threads_refuse_replies(server, run):
    async def scenario():
        alice, bob, mod = await user(server, "alice"), await user(server, "bob"), await user(server, "mod")
        admin, svc = await service(server, members=(alice, bob), staff=(mod,))
        forum = await room_in(alice, svc, "forum", bob, mod)
        old = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="Old", body="a")
        new = await bob.request("thread_create", room_id=forum, txn_id=txn(), title="New", body="b")
        for who in (alice, bob):  # the forum's creator is not staff either
            with pytest.raises(Forbidden):
                await who.request("thread_state", room_id=forum, thread_id=old["event_id"], pinned=True)
        pinned = await mod.request("thread_state", room_id=forum, thread_id=old["event_id"], pinned=True)
        assert pinned["pinned"] is True and pinned["locked"] is False
        listed = (await bob.request("threads", room_id=forum))["threads"]
        assert [t["event_id"] for t in listed] == [old["event_id"], new["event_id"]] and listed[0]["pinned"]
        locked = await mod.request("thread_state", room_id=forum, thread_id=old["event_id"], locked=True)
        assert locked["pinned"] is True and locked["locked"] is True
        with pytest.raises(Forbidden) as exc:
            await bob.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=old["event_id"], body="hi")
        assert "locked" in exc.value.reason and exc.value.field == "thread_id"
        await mod.request("thread_state", room_id=forum, thread_id=old["event_id"], locked=False)
        reply = await bob.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=old["event_id"], body="hi")
        with pytest.raises(BadField):
            await mod.request("thread_state", room_id=forum, thread_id=old["event_id"])
        with pytest.raises(BadField) as exc:  # a reply is not a thread
            await mod.request("thread_state", room_id=forum, thread_id=reply["event_id"], pinned=True)
        assert exc.value.field == "thread_id"
        await close(alice, bob, mod, admin)

    run(scenario())


def test_other_services_cannot_read_or_post_in_a_forum(server, run):
    async def scenario():
        alice, eve = await user(server, "alice"), await user(server, "eve")
        admin, svc = await service(server, members=(alice,))
        admin2, other = await service(server, members=(eve,), name="Carers")
        forum = await room_in(alice, svc, "forum")
        thread = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="T", body="b")
        with pytest.raises(Forbidden):
            await eve.join(forum)
        with pytest.raises(NotInRoom):
            await eve.request("threads", room_id=forum)
        with pytest.raises(NotInRoom):
            await eve.request("thread", room_id=forum, thread_id=thread["event_id"])
        with pytest.raises(NotInRoom):
            await eve.request("thread_create", room_id=forum, txn_id=txn(), title="x", body="y")
        with pytest.raises(NotInRoom):
            await eve.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=thread["event_id"], body="y")
        await close(alice, eve, admin, admin2)

    run(scenario())


def test_bad_input_limits_kinds_and_replayed_txns(server, run):
    async def scenario():
        alice = await user(server, "alice")
        admin, svc = await service(server, members=(alice,), settings={"char_limits": {"forum": 50}})
        forum = await room_in(alice, svc, "forum")
        chat = await room_in(alice, svc, "chat")
        with pytest.raises(TooLarge) as exc:
            await alice.request("thread_create", room_id=forum, txn_id=txn(), title="T", body="x" * 51)
        assert exc.value.field == "body" and "50" in exc.value.reason
        with pytest.raises(BadField) as exc:
            await alice.request("thread_create", room_id=forum, txn_id=txn(), title="T" * 301, body="x")
        assert exc.value.field == "title"
        with pytest.raises(BadField) as exc:
            await alice.request("thread_create", room_id=forum, txn_id=txn(), title=5, body="x")
        assert exc.value.field == "title"
        with pytest.raises(MissingField):
            await alice.request("thread_create", room_id=forum, txn_id=txn(), body="x")
        with pytest.raises(BadField) as exc:  # threads live in forum rooms only
            await alice.request("thread_create", room_id=chat, txn_id=txn(), title="T", body="x")
        assert exc.value.field == "room_id" and "chat" in exc.value.reason
        t = txn()
        first = await alice.request("thread_create", room_id=forum, txn_id=t, title="T", body="x" * 50)
        again = await alice.request("thread_create", room_id=forum, txn_id=t, title="T", body="x" * 50)
        assert again["event_id"] == first["event_id"] and again["pos"] == first["pos"] and again["duplicate"]
        reply = await alice.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=first["event_id"],
                                    body="r")
        with pytest.raises(BadField) as exc:  # a reply to a reply
            await alice.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=reply["event_id"], body="r")
        assert exc.value.field == "thread_id"
        msg = await alice.send(chat, "hello")
        with pytest.raises(BadField):  # a reply to a message of another room
            await alice.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=msg["event_id"], body="r")
        with pytest.raises(BadField):
            await alice.request("thread_reply", room_id=forum, txn_id=txn(), thread_id="nope", body="r")
        with pytest.raises(NotFound):
            await alice.request("thread", room_id=forum, thread_id=reply["event_id"])
        assert (await alice.request("threads", room_id=forum))["threads"][0]["reply_count"] == 1
        with pytest.raises(UnknownOp):
            await alice.request("thread_delete", room_id=forum, thread_id=first["event_id"])
        with pytest.raises(BadField) as exc:
            await alice.request("threads", room_id=forum, limit="ten")
        assert exc.value.field == "limit"
        with pytest.raises(BadField) as exc:
            await alice.request("thread_state", room_id=forum, thread_id=first["event_id"], pinned="yes")
        assert exc.value.field == "pinned"
        with pytest.raises(BadField) as exc:  # a bad txn_id
            await alice.request("thread_create", room_id=forum, txn_id="", title="T", body="x")
        assert exc.value.field == "txn_id"
        await close(alice, admin)

    run(scenario())


def test_edits_by_the_author_keep_history(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        forum = await room_in(alice, svc, "forum", bob)
        t = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="Draft title", body="v1")
        await alice.request("blog_edit", room_id=forum, txn_id=txn(), event_id=t["event_id"], body="v2")
        with pytest.raises(Forbidden):
            await bob.request("blog_edit", room_id=forum, txn_id=txn(), event_id=t["event_id"], body="mine")
        listed = (await bob.request("threads", room_id=forum))["threads"][0]
        assert listed["content"] == {"title": "Draft title", "body": "v2"} and listed["edited"] is True
        versions = (await bob.request("edits", room_id=forum, event_id=t["event_id"]))["versions"]
        assert [v["content"]["body"] for v in versions] == ["v1", "v2"]
        await close(alice, bob, admin)

    run(scenario())


def test_thread_order_and_counts_match_a_model(server, run):
    """Random threads, replies and pins (seeded): the list always matches a simple model."""
    import random

    async def scenario():
        rng = random.Random(4)
        alice, bob, mod = await user(server, "alice"), await user(server, "bob"), await user(server, "mod")
        admin, svc = await service(server, members=(alice, bob), staff=(mod,))
        forum = await room_in(alice, svc, "forum", bob, mod)
        model = {}  # thread_id -> [last_pos, replies, pinned]
        for step in range(30):
            action = rng.random()
            if not model or action < 0.25:
                sent = await rng.choice((alice, bob)).request("thread_create", room_id=forum, txn_id=txn(),
                                                              title=f"t{step}", body="b")
                model[sent["event_id"]] = [sent["pos"], 0, False]
            elif action < 0.85:
                thread_id = rng.choice(sorted(model))
                sent = await rng.choice((alice, bob)).request("thread_reply", room_id=forum, txn_id=txn(),
                                                              thread_id=thread_id, body="r")
                model[thread_id][0] = sent["pos"]
                model[thread_id][1] += 1
            else:
                thread_id = rng.choice(sorted(model))
                pinned = not model[thread_id][2]
                await mod.request("thread_state", room_id=forum, thread_id=thread_id, pinned=pinned)
                model[thread_id][2] = pinned
            expected = sorted(model, key=lambda t: (not model[t][2], -model[t][0]))
            listed, before = [], None
            while True:
                page = await bob.request("threads", room_id=forum, limit=3, **({"before": before} if before else {}))
                listed += page["threads"]
                before = page["next"]
                if before is None:
                    break
            assert [t["event_id"] for t in listed] == expected
            assert [t["reply_count"] for t in listed] == [model[t][1] for t in expected]
            assert [t["last_pos"] for t in listed] == [model[t][0] for t in expected]
        await close(alice, bob, mod, admin)

    run(scenario(), 120)
