"""Member controls against the real server: block (live, history, notifications, DMs; the
blocked member is not told; staff cannot be blocked), mute words, content-warning
preferences and taking a break."""

from __future__ import annotations

import asyncio
import json

import pytest

from protocol.errors import BadField, CannotBlockStaff, Forbidden, MissingField, NotFound
from tests.conftest import ServerProcess, module_server
from tests.helpers import all_history, messages_until, user
from tests.test_content_support import grant_admin

pytestmark = pytest.mark.integration


ctl_server = module_server("controls")


async def _cast(server, n=3):
    """An admin, a clinician, ``n`` members of one service, and a public chat room of it."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    service = (await admin.request("create_service", name="Peer support"))["service_id"]
    clin = await user(server, "clin")
    await admin.request("service_add_member", service_id=service, user_id=clin.user_id, role="clinician")
    members = [await user(server, name) for name in ("alice", "bob", "carol")[:n]]
    for m in members:
        await admin.request("service_add_member", service_id=service, user_id=m.user_id)
    room = (await admin.request("create_room", kind="chat", name="Evening", public=True,
                                service_id=service))["room_id"]
    for c in (clin, *members):
        await c.join(room)
    return admin, clin, members, service, room


async def _frame(client, op, timeout_s=10.0):
    """The next pushed frame with ``op`` (other pushes are skipped)."""
    while True:
        frame = await client.next_frame(timeout_s)
        if frame.get("op") == op:
            return frame


def _bodies(events):
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def _close(*clients):
    for c in clients:
        await c.close()


def test_block_hides_a_member_everywhere_and_they_are_not_told(ctl_server, run):
    async def scenario():
        admin, clin, (alice, bob, carol), service, room = await _cast(ctl_server)
        old_dm = (await alice.request("create_dm", user_id=bob.user_id))["room_id"]
        await alice.leave(old_dm)
        for c in (alice, carol):
            await c.sync()
        assert await alice.request("block", user_id=bob.user_id) == {"user_id": bob.user_id, "blocked": True}
        assert (await alice.request("block", user_id=bob.user_id))["blocked"] is True  # idempotent
        listed = await alice.request("blocks")
        assert listed == {"blocks": [{"user_id": bob.user_id, "pseudonym": bob.pseudonym}]}
        assert (await bob.request("blocks"))["blocks"] == []  # nothing tells bob

        # live: alice gets carol's message and not bob's; carol gets both
        await bob.send(room, f"@{alice.pseudonym} from bob")
        await carol.send(room, f"@{alice.pseudonym} from carol")
        assert _bodies(await messages_until(alice, 1)) == [f"@{alice.pseudonym} from carol"]
        assert _bodies(await messages_until(carol, 1)) == [f"@{alice.pseudonym} from bob"]
        # notifications: carol's mention is pushed and stored, bob's is neither
        pushed = await _frame(alice, "notification")
        assert pushed["notification"]["actor"] == carol.user_id
        stored = (await alice.request("notifications"))["notifications"]
        assert [n["actor"] for n in stored] == [carol.user_id]
        # history: bob's message is left out for alice only
        assert f"@{alice.pseudonym} from bob" not in _bodies(await all_history(alice, room))
        assert f"@{alice.pseudonym} from bob" in _bodies(await all_history(carol, room))
        # resume replay: another device of alice's catching up from the start skips it too
        from clients.client import SharonClient
        from tests.helpers import PASSWORD
        device = await SharonClient.connect(ctl_server.ws_url)
        await device.login(alice.pseudonym, PASSWORD)
        await device.sync(since=0)  # replayed events are pushed before the reply
        replayed = []
        await device.ping()
        while True:
            try:
                replayed.append(await device.next_event(timeout_s=0.2))
            except (TimeoutError, asyncio.TimeoutError):
                break
        assert f"@{alice.pseudonym} from carol" in _bodies(replayed)
        assert f"@{alice.pseudonym} from bob" not in _bodies(replayed)
        await device.close()

        # DMs: bob cannot bring alice back into their old DM (the refusal does not say why),
        # nor can alice open one with bob while she blocks him; other DMs are unaffected
        with pytest.raises(Forbidden) as exc:
            await bob.request("create_dm", user_id=alice.user_id)
        assert "block" not in exc.value.reason and exc.value.field == "user_id"
        with pytest.raises(Forbidden) as exc:
            await alice.request("create_dm", user_id=bob.user_id)
        assert "unblock" in exc.value.reason
        assert (await alice.request("create_dm", user_id=carol.user_id))["created"] is True

        # staff of a shared service cannot be blocked; bad targets name the field
        with pytest.raises(CannotBlockStaff) as exc:
            await alice.request("block", user_id=clin.user_id)
        assert exc.value.field == "user_id"
        with pytest.raises(BadField) as exc:
            await alice.request("block", user_id=alice.user_id)
        assert exc.value.field == "user_id"
        with pytest.raises(NotFound):
            await alice.request("block", user_id="@nobody:localhost")
        with pytest.raises(MissingField):
            await alice.request("block")

        # unblock: bob is back, live and in history
        assert (await alice.request("unblock", user_id=bob.user_id))["blocked"] is False
        await bob.send(room, "bob again")
        assert _bodies(await messages_until(alice, 1)) == ["bob again"]
        assert f"@{alice.pseudonym} from bob" in _bodies(await all_history(alice, room))
        assert (await bob.request("create_dm", user_id=alice.user_id))["user_id"] == alice.user_id
        await _close(admin, clin, alice, bob, carol)

    run(scenario())


def test_blocks_survive_a_restart(tmp_path, run):
    proc = ServerProcess(tmp_path / "sharon-data").start()
    try:
        async def first():
            admin, clin, (alice, bob), service, room = await _cast(proc, 2)
            await alice.request("block", user_id=bob.user_id)
            await alice.request("mute_words_set", words=["Spiders"])
            await alice.request("cw_prefs_set", categories={"suicide": "hide"})
            await alice.request("break_set", on=True)
            ids = (alice.pseudonym, bob.user_id, room)
            await _close(admin, clin, alice, bob)
            return ids

        pseudonym, bob_id, room = run(first())
        proc.restart()

        async def second():
            from clients.client import SharonClient
            from tests.helpers import PASSWORD
            alice = await SharonClient.connect(proc.ws_url)
            await alice.login(pseudonym, PASSWORD)
            got = await alice.request("controls")
            assert [b["user_id"] for b in got["blocks"]] == [bob_id]
            assert got["mute_words"] == ["spiders"]
            assert got["cw_prefs"]["suicide"] == "hide" and got["cw_prefs"]["abuse"] == "show"
            assert got["break"] == {"on": True, "until_ts": None}
            await alice.close()

        run(second())
    finally:
        proc.stop()


def test_mute_words_quiet_notifications_and_mark_history(ctl_server, run):
    async def scenario():
        admin, clin, (alice, bob), service, room = await _cast(ctl_server, 2)
        await alice.sync()
        set_ = await alice.request("mute_words_set", words=["Spiders", "big  exam", "spiders"])
        assert set_ == {"words": ["spiders", "big exam"]}
        assert await alice.request("mute_words") == set_
        await bob.send(room, f"@{alice.pseudonym} SPIDERS everywhere")
        await bob.send(room, f"@{alice.pseudonym} the big exam is done")
        await bob.send(room, f"@{alice.pseudonym} tea later?")
        # only the unmuted mention is pushed; all three are stored
        assert (await _frame(alice, "notification"))["notification"]["unread"] == 3
        assert len((await alice.request("notifications"))["notifications"]) == 3
        # history marks muted events for alice, and for nobody else
        mine = {e["content"]["body"]: e.get("muted") for e in await all_history(alice, room)
                if e["type"] == "m.room.message"}
        assert mine == {f"@{alice.pseudonym} SPIDERS everywhere": True,
                        f"@{alice.pseudonym} the big exam is done": True,
                        f"@{alice.pseudonym} tea later?": None}
        assert all("muted" not in e for e in await all_history(bob, room))
        # bounds and types name the field
        for words, field in ((["x" * 51], "words[0]"), ([""], "words[0]"), (["a"] * 0 + [1], "words[0]"),
                             ("spiders", "words"), ([f"w{i}" for i in range(101)], "words")):
            with pytest.raises(BadField) as exc:
                await alice.request("mute_words_set", words=words)
            assert exc.value.field == field
        assert (await alice.request("mute_words_set", words=[]))["words"] == []
        await _close(admin, clin, alice, bob)

    run(scenario())


def test_content_warning_preferences(ctl_server, run):
    async def scenario():
        admin, clin, (alice, bob), service, room = await _cast(ctl_server, 2)
        got = await alice.request("cw_prefs_set", categories={"suicide": "hide", "eating": "blur"})
        assert got["categories"]["suicide"] == "hide" and got["categories"]["eating"] == "blur"
        assert got["categories"]["abuse"] == "show"
        assert await alice.request("cw_prefs") == got
        again = await alice.request("cw_prefs_set", categories={"eating": "show"})
        assert again["categories"]["suicide"] == "hide" and again["categories"]["eating"] == "show"
        for cats, field in (({"nope": "hide"}, "categories.nope"), ({"abuse": "maybe"}, "categories.abuse"),
                            ("hide", "categories")):
            with pytest.raises(BadField) as exc:
                await alice.request("cw_prefs_set", categories=cats)
            assert exc.value.field == field

        # with moderation's content warnings: "hide" leaves the event out of alice's history,
        # "blur" marks it; others see it as moderation shows it
        await alice.request("cw_prefs_set", categories={"eating": "blur"})
        hidden = await bob.send(room, "a post about a hard night")
        blurred = await bob.send(room, "a post about food")
        await bob.send(room, "a post about tea")
        await clin.request("mod_content_warning", event_id=hidden["event_id"], category="suicide")
        await clin.request("mod_content_warning", event_id=blurred["event_id"], category="eating")
        seen = {e["content"]["body"]: e for e in await all_history(alice, room) if e["type"] == "m.room.message"}
        assert "a post about a hard night" not in seen
        assert seen["a post about food"].get("blurred") is True and "blurred" not in seen["a post about tea"]
        assert "a post about a hard night" in _bodies(await all_history(bob, room))
        await _close(admin, clin, alice, bob)

    run(scenario())


def test_a_break_quiets_notifications_and_hides_typing(ctl_server, run):
    async def scenario():
        admin, clin, (alice, bob, carol), service, room = await _cast(ctl_server)
        for c in (alice, bob):
            await c.sync()
        assert await alice.request("break_set", on=True) == {"on": True, "until_ts": None}
        # typing while on a break is not broadcast: bob's next typing push names carol only
        await alice.request("typing", room_id=room, typing=True)
        await carol.request("typing", room_id=room, typing=True)
        assert (await _frame(bob, "typing"))["user_ids"] == [carol.user_id]
        # notifications are stored, not pushed
        await carol.send(room, f"@{alice.pseudonym} are you around?")
        await messages_until(alice, 1)
        assert [n["actor"] for n in (await alice.request("notifications"))["notifications"]] == [carol.user_id]
        assert (await alice.request("break_set", on=False)) == {"on": False, "until_ts": None}
        await carol.send(room, f"@{alice.pseudonym} welcome back")
        assert (await _frame(alice, "notification"))["notification"]["unread"] == 2

        # a timed break: until_ts must be in the future and within 90 days
        with pytest.raises(BadField) as exc:
            await alice.request("break_set", on=True, until_ts=1)
        assert exc.value.field == "until_ts"
        with pytest.raises(BadField) as exc:
            await alice.request("break_set", on=True, until_ts=2**52)
        assert exc.value.field == "until_ts"
        with pytest.raises(MissingField) as exc:
            await alice.request("break_set")
        assert exc.value.field == "on"
        await _close(admin, clin, alice, bob, carol)

    run(scenario())


def test_cli_controls(ctl_server, run, tmp_path):
    from tests.test_cli import User

    me = User(ctl_server, tmp_path / "me", "cli-me").register()
    other = User(ctl_server, tmp_path / "other", "cli-other").register()
    room = me.ok("create-room", "Porch", "--kind", "chat", "--public").strip()
    other.ok("join", room)
    other.ok("send", room, "spiders in the bath")
    other.ok("send", room, "kettle is on")

    assert me.ok("mute-words", "Spiders", "big exam").split("\n")[:2] == ["spiders", "big exam"]
    assert me.ok("mute-words").split() == ["spiders", "big", "exam"]
    shown = me.ok("history", room)
    assert "kettle is on" in shown and "spiders" not in shown  # muted events are hidden
    assert "spiders in the bath" in me.ok("history", room, "--all")
    assert me.ok("mute-words", "--clear") == ""

    assert me.ok("block", other.user_id).strip() == f"blocked {other.user_id}"
    assert other.user_id in me.ok("blocks")
    assert "kettle is on" not in me.ok("history", room)
    assert me.ok("unblock", other.user_id).strip() == f"unblocked {other.user_id}"

    prefs = me.ok("cw", "suicide=hide", "eating=blur")
    assert "suicide=hide" in prefs and "eating=blur" in prefs and "abuse=show" in prefs
    bad = me.run("cw", "suicide=maybe")
    assert bad.returncode != 0 and "CATEGORY=show|blur|hide" in bad.stderr
    # a moderator's warnings: the hidden category is left out, the blurred one is a CW line
    other.ok("send", room, "a post about food")
    other.ok("send", room, "a post about a hard night")
    ids = {e["content"]["body"]: e["event_id"] for e in map(json.loads, me.ok("history", room, "--json").splitlines())}

    async def warn():
        admin = await user(ctl_server, "cli-admin")
        grant_admin(ctl_server, admin.pseudonym)
        await admin.request("mod_content_warning", event_id=ids["a post about food"], category="eating")
        await admin.request("mod_content_warning", event_id=ids["a post about a hard night"], category="suicide")
        await admin.close()

    run(warn())
    shown = me.ok("history", room)
    assert "content warning: eating \u2014 run with --all to show" in shown
    assert "a post about food" not in shown and "hard night" not in shown
    assert "a post about food" in me.ok("history", room, "--all")

    assert me.ok("break", "on", "--hours", "2").startswith("on a break until ")
    assert me.ok("break").startswith("on a break until ")
    assert me.ok("break", "off").strip() == "not on a break"


def test_a_timed_break_ends_by_itself():
    """The break's end is a comparison with the server clock at each use (no timer to lose)."""
    from types import SimpleNamespace

    from sharon_server.features.controls import Controls

    now = [1_000]
    ctx = SimpleNamespace(db=None, now_ms=lambda: now[0], services=None, hub=SimpleNamespace(blocked_by={}))
    c = Controls(ctx)
    c._apply("@a:x", [], {}, True, 5_000)  # noqa: SLF001
    row = {"user_id": "@a:x", "actor": "@b:x"}
    assert c.on_break("@a:x") and c.notify_filter(row, []) == "quiet"
    assert c.break_state("@a:x") == {"on": True, "until_ts": 5_000}
    now[0] = 5_000
    assert not c.on_break("@a:x") and c.notify_filter(row, []) is None
    assert c.break_state("@a:x") == {"on": False, "until_ts": None}


def test_controls_and_risk_flags_on_postgresql(pg_server, run):
    """The same writes and reads on PostgreSQL: upserts, blocks, flags, and a reload."""
    async def first():
        admin, clin, (alice, bob), service, room = await _cast(pg_server, 2)
        await alice.request("block", user_id=bob.user_id)
        await alice.request("mute_words_set", words=["spiders"])
        await alice.request("mute_words_set", words=["moths"])  # the update path of the upsert
        await alice.request("break_set", on=True)
        sent = await bob.send(room, "honestly I want to die some nights")
        flags = (await clin.request("risk_flags", service_id=service))["flags"]
        assert [(f["event_id"], f["score"]) for f in flags] == [(sent["event_id"], 700)]
        ids = (alice.pseudonym, bob.user_id, clin.pseudonym, service)
        await _close(admin, clin, alice, bob)
        return ids

    pseudonym, bob_id, clin_name, service = run(first())
    pg_server.restart()

    async def second():
        from clients.client import SharonClient
        from tests.helpers import PASSWORD
        alice = await SharonClient.connect(pg_server.ws_url)
        await alice.login(pseudonym, PASSWORD)
        got = await alice.request("controls")
        assert [b["user_id"] for b in got["blocks"]] == [bob_id]
        assert got["mute_words"] == ["moths"] and got["break"]["on"] is True
        clin = await SharonClient.connect(pg_server.ws_url)
        await clin.login(clin_name, PASSWORD)
        assert len((await clin.request("risk_flags", service_id=service))["flags"]) == 1
        await _close(alice, clin)

    run(second())


def test_search_shows_what_history_shows(ctl_server, run):
    """Search applies the viewer's controls like history: a blocked member's posts and posts
    whose content-warning category the viewer hides are left out, blurred ones are marked,
    muted ones too; a hidden post is out of the index for everyone but stays for staff notes."""
    async def scenario():
        admin, clin, (alice, bob, carol), service, room = await _cast(ctl_server)

        def bodies(hits):
            return sorted(h["event"]["content"]["body"] for h in hits)

        await bob.send(room, "kestrel from bob")
        await carol.send(room, "kestrel from carol")
        cw_hide = await carol.send(room, "kestrel hard night")
        cw_blur = await carol.send(room, "kestrel food")
        await carol.send(room, "kestrel spiders")
        hidden = await carol.send(room, "kestrel hidden")
        await clin.request("mod_content_warning", event_id=cw_hide["event_id"], category="suicide")
        await clin.request("mod_content_warning", event_id=cw_blur["event_id"], category="eating")
        await clin.request("mod_hide", event_id=hidden["event_id"], rule="be-kind", reason="check")
        everything = ["kestrel food", "kestrel from bob", "kestrel from carol", "kestrel hard night",
                      "kestrel spiders"]
        assert bodies((await alice.request("search", query="kestrel"))["results"]) == everything

        await alice.request("block", user_id=bob.user_id)
        await alice.request("cw_prefs_set", categories={"suicide": "hide", "eating": "blur"})
        await alice.request("mute_words_set", words=["spiders"])
        hits = {h["event"]["content"]["body"]: h for h in (await alice.request("search", query="kestrel"))["results"]}
        assert sorted(hits) == ["kestrel food", "kestrel from carol", "kestrel spiders"]
        assert hits["kestrel food"]["event"].get("blurred") is True
        assert hits["kestrel spiders"]["event"].get("muted") is True
        plain = hits["kestrel from carol"]["event"]
        assert "blurred" not in plain and "muted" not in plain
        # the same query by someone without controls still finds everything; bob is not told
        assert bodies((await carol.request("search", query="kestrel"))["results"]) == everything
        assert bodies((await bob.request("search", query="kestrel"))["results"]) == everything
        # unblocking brings bob's post back
        await alice.request("unblock", user_id=bob.user_id)
        assert "kestrel from bob" in bodies((await alice.request("search", query="kestrel"))["results"])
        await _close(admin, clin, alice, bob, carol)

    run(scenario())


def test_tag_listings_show_what_history_shows(ctl_server, run):
    """``tag_posts`` reads tag rows, which a hide does not remove: the listing must apply the
    viewer's filters like history (a hidden post is a placeholder, a blocked member's post
    and a hidden CW category are left out)."""
    async def scenario():
        admin, clin, (alice, bob, carol), service, room = await _cast(ctl_server)
        await bob.send(room, "#kestrel from bob")
        hidden = await carol.send(room, "#kestrel my address is 1 High St")
        warned = await carol.send(room, "#kestrel a hard night")
        await carol.send(room, "#kestrel from carol")
        await clin.request("mod_hide", event_id=hidden["event_id"], rule="be-kind", reason="identifying")
        await clin.request("mod_content_warning", event_id=warned["event_id"], category="suicide")
        await alice.request("block", user_id=bob.user_id)
        await alice.request("cw_prefs_set", categories={"suicide": "hide"})

        async def listing(client):
            events = (await client.request("tag_posts", service_id=service, tag="kestrel"))["events"]
            return sorted(e["content"]["body"] for e in events)

        mine = await listing(alice)
        assert "#kestrel from carol" in mine and "#kestrel from bob" not in mine
        assert not any("High St" in b or "hard night" in b for b in mine)
        assert len(mine) == 2  # carol's post and the hidden post's placeholder
        theirs = await listing(bob)
        assert not any("High St" in b for b in theirs) and "#kestrel a hard night" in theirs
        assert any("High St" in b for b in await listing(clin))  # staff see it, with notes
        await _close(admin, clin, alice, bob, carol)

    run(scenario())


def test_content_listings_leave_out_blocked_members(ctl_server, run):
    """Forum listings read the content feature's own tables: blocks apply there as in history."""
    from tests.test_content_support import txn

    async def scenario():
        admin, clin, (alice, bob, carol), service, room = await _cast(ctl_server)
        forum = (await admin.request("create_room", kind="forum", name="Nights", public=True,
                                     service_id=service))["room_id"]
        for c in (alice, bob, carol):
            await c.join(forum)
        mine = await carol.request("thread_create", room_id=forum, txn_id=txn(), title="Sleep", body="tips?")
        await bob.request("thread_create", room_id=forum, txn_id=txn(), title="From bob", body="hi")
        await bob.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=mine["event_id"], body="bob says")
        await carol.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=mine["event_id"], body="carol says")
        await alice.request("block", user_id=bob.user_id)

        def titles(listing):
            return sorted(t["content"].get("title") for t in listing["threads"])

        assert titles(await alice.request("threads", room_id=forum)) == ["Sleep"]
        assert titles(await carol.request("threads", room_id=forum)) == ["From bob", "Sleep"]
        thread = await alice.request("thread", room_id=forum, thread_id=mine["event_id"])
        replies = [e["content"]["body"] for e in thread.get("replies", thread.get("events", []))]
        assert "bob says" not in replies and "carol says" in replies
        await _close(admin, clin, alice, bob, carol)

    run(scenario())
