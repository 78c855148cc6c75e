"""Gaps closed after #5/#6: look-alike pseudonyms, server admins in power levels, notices in
the notification feed, and search re-indexing on unhide -- against the real server."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clients.client import SharonClient
from protocol import moderation as MP
from protocol.errors import Forbidden, InvalidPseudonym, PseudonymRejected, PseudonymTaken
from sharon_server.accounts import PseudonymScreen, pseudonym_skeleton
from tests.conftest import module_server
from tests.helpers import PASSWORD, all_history, user
from tests.moderation_helpers import cast, next_of, push, txn
from tests.test_content_support import grant_admin

_n = itertools.count(1)
registered: set = set()

# -- look-alike forms ------------------------------------------------------------------------

_ASCII_LOOKALIKES = {
    "o": ["0", "O"], "i": ["1", "l", "I", "L"], "l": ["1", "i", "I", "L"], "e": ["3", "E"],
    "a": ["4", "A"], "s": ["5", "S"], "t": ["7", "T"], "b": ["8", "B"], "g": ["6", "G"], "z": ["2", "Z"],
    "m": ["rn", "M"], "w": ["vv", "W"],
}
_SCRIPT_LOOKALIKES = {"a": ["\u0430", "\u03b1"], "o": ["\u043e", "\u03bf"], "e": ["\u0435"], "c": ["\u0441"],
                      "p": ["\u0440"], "x": ["\u0445"], "y": ["\u0443"], "i": ["\u0456"]}
_BASE_LETTERS = "abcdefghjkmopqstuwxyz"  # a readable base (the variants add i/l/rn/vv look-alikes)


@st.composite
def variant_of(draw, base: str, scripts: bool = False):
    """A confusable spelling of ``base``: case, leet digits, l/i/1, rn/m, vv/w, separators
    (and, with ``scripts``, Cyrillic/Greek letters)."""
    out = []
    for i, ch in enumerate(base):
        options = [ch, ch.upper()] + _ASCII_LOOKALIKES.get(ch, [])
        if scripts:
            options += _SCRIPT_LOOKALIKES.get(ch, [])
        piece = draw(st.sampled_from(options))
        if i > 0 and draw(st.integers(0, 3)) == 0:
            piece = draw(st.sampled_from(["_", ".", "-"])) + piece
        out.append(piece)
    return "".join(out)


bases = st.text(_BASE_LETTERS, min_size=4, max_size=10)


@given(st.data(), bases)
@settings(max_examples=300, deadline=None)
def test_every_lookalike_spelling_has_the_same_skeleton(data, base):
    variant = data.draw(variant_of(base, scripts=True))
    assert pseudonym_skeleton(variant) == pseudonym_skeleton(base)


@given(st.lists(st.text("abcdefghjkpqstuxyz", min_size=4, max_size=12), min_size=2, max_size=2, unique=True))
def test_distinct_plain_names_have_distinct_skeletons(names):
    a, b = names
    assert pseudonym_skeleton(a) != pseudonym_skeleton(b)


def test_digits_that_do_not_look_alike_stay_apart():
    assert len({pseudonym_skeleton(f"sam{d}") for d in "0123456789"}) == 10
    assert pseudonym_skeleton("peer-16") != pseudonym_skeleton("peer-19")


# -- one server for the module ------------------------------------------------------------------

gserver = module_server("gaps")


@pytest.mark.integration
def test_lookalike_registrations_are_refused_without_naming_the_account(gserver, run):
    async def scenario():
        owner = await user(gserver, "juniper")
        probe = await SharonClient.connect(gserver.ws_url)
        taken = owner.pseudonym  # e.g. "juniper-12"
        stem = taken.split("-")[0]
        number = taken.split("-")[1]
        for variant in (taken.upper(), f"{stem}_{number}", f"{stem}{number}", f"jun1per-{number}",
                        f"Ju.niper.{number}", f"JUNIPER--{number}", f"juniper-{number}".replace("i", "l")):
            with pytest.raises(PseudonymTaken) as exc:
                await probe.register(variant, PASSWORD)
            assert exc.value.field == "pseudonym"
            assert taken not in exc.value.reason and owner.user_id not in exc.value.reason
        with pytest.raises(PseudonymTaken) as exc:
            await probe.register(f"jun1per-{number}", PASSWORD)
        assert "too similar" in exc.value.reason
        with pytest.raises(InvalidPseudonym):  # other scripts are not allowed at all
            await probe.register(f"\u0458uniper-{number}", PASSWORD)
        made = await probe.register(f"juniper-{number}x", PASSWORD)  # a different name is fine
        assert made["pseudonym"] == f"juniper-{number}x"
        await probe.close()
        await owner.close()

    run(scenario())


@pytest.mark.integration
@given(data=st.data())
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_lookalike_of_a_taken_pseudonym_is_refused_and_distinct_names_accepted(gserver, run, data):
    screen = PseudonymScreen()
    base = "q" + data.draw(st.text(_BASE_LETTERS, min_size=5, max_size=9)) + "z"
    plain = "k" + data.draw(st.text("abcdefghjkpqstuxyz", min_size=5, max_size=9)) + "x"
    for name in (base, plain):
        try:
            screen.check(name)
        except Exception:
            assume(False)
    assume(pseudonym_skeleton(base) != pseudonym_skeleton(plain))
    variant = data.draw(variant_of(base))
    assume(len(variant) <= 32)

    async def scenario():
        first = await SharonClient.connect(gserver.ws_url)
        try:
            await first.register(base, PASSWORD)
        except PseudonymTaken:  # Hypothesis may replay a base it tried before
            pass
        other = await SharonClient.connect(gserver.ws_url)
        with pytest.raises((PseudonymTaken, PseudonymRejected)) as exc:
            await other.register(variant, PASSWORD)
        assert exc.value.field == "pseudonym"
        if isinstance(exc.value, PseudonymRejected):  # the spelling also trips the screening
            with pytest.raises(PseudonymRejected):   # (e.g. "q-mod-z", a 7-digit run)
                screen.check(variant)
        try:
            made = await other.register(plain, PASSWORD)  # an ordinary, different name is accepted
        except PseudonymTaken as exc:  # only a replayed example: it was accepted the first time
            assert plain in registered, exc
        else:
            assert made["pseudonym"] == plain
            registered.add(plain)
        await first.close()
        await other.close()

    run(scenario())


# -- server admins in power levels -------------------------------------------------------------

@pytest.mark.integration
def test_a_server_admin_who_is_not_a_member_locks_pins_and_hides(gserver, run):
    async def scenario():
        c = await cast(gserver)
        mod, alice, bob = c.mods[0], c.members[0], c.members[1]
        forum = (await mod.request("create_room", kind="forum", name="Questions", public=True,
                                   service_id=c.service))["room_id"]
        await alice.join(forum)
        thread = (await alice.request("thread_create", room_id=forum, title="Sleep", txn_id=txn(),
                                      body="how do you all cope with the nights?"))["event_id"]
        boss = await user(gserver, "boss")
        grant_admin(gserver, boss.pseudonym)
        # the admin looks at the service's sanctions (any staff action re-reads the admins)
        await boss.request("sanctions", service_id=c.service)
        await boss.join(forum)
        locked = await boss.request("mod_lock", room_id=forum, thread_id=thread, rule="be-kind",
                                    reason="Closing this while we check in with everyone.")
        assert locked["locked"] is True
        with pytest.raises(Forbidden):
            await alice.request("thread_reply", room_id=forum, thread_id=thread, body="me too", txn_id=txn())
        pinned = await boss.request("thread_state", room_id=forum, thread_id=thread, pinned=True)
        assert pinned["pinned"] is True and pinned["locked"] is True

        await boss.join(c.room)
        post = await alice.send(c.room, "my number is in my profile, text me", txn_id=txn())
        await next_of(bob, "m.room.message")
        hidden = await boss.request("mod_hide", event_id=post["event_id"], rule="no-identifying-details",
                                    reason="Keeping contact details private.")
        assert hidden["hidden"] is True and hidden["announced"]
        live = await next_of(bob, MP.MOD_HIDE)
        assert live["sender"] == boss.user_id and live["content"] == {"target": post["event_id"]}

        async def level_in(room_id):
            levels = [e for e in await all_history(alice, room_id) if e["type"] == "m.room.power_levels"]
            return levels[-1]["content"]["users"].get(boss.user_id, 0)

        assert [await level_in(r) for r in (forum, c.room)] == [100, 100]
        # revoked from the shell: back to 0 (not a member) in every room of the service
        revoke = subprocess.run([sys.executable, "-m", "sharon_server", "admin", "--data-dir",
                                 str(gserver.data_dir), "revoke", boss.pseudonym],
                                capture_output=True, text=True, timeout=60)
        assert revoke.returncode == 0, revoke.stderr
        await mod.request("sanctions", service_id=c.service)  # any staff action re-reads the admins
        assert [await level_in(r) for r in (forum, c.room)] == [0, 0]
        await boss.close()
        await c.close()

    run(scenario())


# -- notices in the notification feed ----------------------------------------------------------

async def _notification(client: SharonClient, reason: str):
    while True:
        frame = await push(client, "notification")
        if frame["notification"]["reason"] == reason:
            return frame["notification"]


@pytest.mark.integration
def test_sanctions_decisions_outcomes_and_discharges_land_in_the_feed(gserver, run):
    async def scenario():
        c = await cast(gserver, members=3)
        mod, mod2, alice, bob, carol = c.mods[0], c.mods[1], *c.members
        start = await alice.request("notifications")
        assert start["unread"] == 0

        # a sanction while alice is live: pushed, stored, counted
        warned = await mod.request("sanction", user_id=alice.user_id, kind="warn", rule="be-kind",
                                   reason="Please keep replies gentle.", service_id=c.service)
        live = await _notification(alice, "sanction")
        assert live["event_id"] is None and live["actor"] is None and live["unread"] == 1
        assert live["notice"]["sanction"]["sanction_id"] == warned["sanction_id"]
        assert "Please keep replies gentle." in json.dumps(live["notice"])

        # a held post rejected while alice is offline: found in the feed on return
        await mod.request("premod_member", service_id=c.service, user_id=alice.user_id, posts=1)
        held = await alice.send(c.room, "first post after the warning", txn_id=txn())
        assert held.get("held") is True
        pseudonym = alice.pseudonym
        await alice.close()
        await mod.request("held_reject", held_id=held["held_id"], reason="Too close to the earlier thread.",
                          rule="be-kind")
        alice = await SharonClient.connect(gserver.ws_url)
        await alice.login(pseudonym, PASSWORD)
        page = await alice.request("notifications")
        assert page["unread"] == 2
        assert [n["reason"] for n in page["notifications"]][:2] == ["held_rejected", "sanction"]
        rejected = page["notifications"][0]["notice"]
        assert rejected["reason"] == "Too close to the earlier thread." and rejected["held_id"] == held["held_id"]

        # paging: one at a time with the same cursor as event notifications
        first = await alice.request("notifications", limit=1)
        second = await alice.request("notifications", limit=1, before=first["next"])
        assert [first["notifications"][0]["reason"], second["notifications"][0]["reason"]] == \
            ["held_rejected", "sanction"]

        # a report outcome reaches the reporter's feed; the reported member learns nothing of them
        await alice.sync()
        post = (await bob.send(c.room, "nobody here cares anyway", txn_id=txn()))["event_id"]
        await carol.request("report", room_id=c.room, event_id=post, category="abuse")
        item = next(i for i in (await mod2.request("queue", service_id=c.service))["items"]
                    if i.get("event_id") == post)
        await mod2.request("queue_resolve", item_id=item["item_id"], outcome="member_supported",
                           note="checked in with bob privately")
        outcome = await _notification(carol, "report_outcome")
        assert outcome["notice"]["outcome"] == "member_supported"

        # a discharge is in the discharged member's feed too
        await c.admin.request("service_discharge", service_id=c.service, user_id=carol.user_id,
                              reason="moved to another area")
        gone = await _notification(carol, "service_discharged")
        assert gone["notice"]["service_id"] == c.service and "discharged" in gone["notice"]["message"]

        # privacy: no notice names a moderator, a reporter or a discharge reason
        for member in (alice, carol, bob):
            feed = json.dumps(await member.request("notifications"))
            for secret in (mod.user_id, mod.pseudonym, mod2.user_id, mod2.pseudonym, c.admin.user_id,
                           "checked in with bob privately", "moved to another area"):
                assert secret not in feed
        assert carol.user_id not in json.dumps(await bob.request("notifications"))

        read = await alice.request("notifications_read")
        assert read["unread"] == 0
        await alice.close()
        await c.close()

    run(scenario())


# -- search index follows hide and unhide ------------------------------------------------------

@pytest.mark.integration
def test_an_unhidden_post_is_found_again_and_a_redacted_one_never(gserver, run):
    async def scenario():
        c = await cast(gserver)
        mod, alice, bob = c.mods[0], c.members[0], c.members[1]
        word = f"marigold{next(_n)}"
        kept = (await alice.send(c.room, f"{word} tea helps me sleep", txn_id=txn()))["event_id"]
        gone = (await alice.send(c.room, f"{word} shop at my address", txn_id=txn()))["event_id"]

        async def found():
            return sorted(r["event"]["event_id"] for r in (await bob.request("search", query=word))["results"])

        assert await found() == sorted([kept, gone])
        for event_id in (kept, gone):
            await mod.request("mod_hide", event_id=event_id, rule="be-kind", reason="checking")
        assert await found() == []
        await mod.request("mod_redact", event_id=gone, rule="no-identifying-details", reason="an address")
        for event_id in (kept, gone):
            await mod.request("mod_unhide", event_id=event_id, reason="looked fine")
        assert await found() == [kept]
        # hiding and unhiding again keeps working (the index stays consistent)
        await mod.request("mod_hide", event_id=kept, rule="be-kind", reason="again")
        assert await found() == []
        await mod.request("mod_unhide", event_id=kept, reason="fine")
        assert await found() == [kept]
        await c.close()

    run(scenario())


# -- PostgreSQL, and restarts ------------------------------------------------------------------

async def _notice_and_search(server):
    """A warn notice lands in the feed and an unhidden post is found again; returns the cast."""
    c = await cast(server)
    mod, alice, bob = c.mods[0], c.members[0], c.members[1]
    await mod.request("sanction", user_id=alice.user_id, kind="warn", rule="be-kind",
                      reason="Gently, please.", service_id=c.service)
    assert (await _notification(alice, "sanction"))["notice"]["sanction"]["reason"] == "Gently, please."
    post = (await alice.send(c.room, "bluebell walks help", txn_id=txn()))["event_id"]
    await mod.request("mod_hide", event_id=post, rule="be-kind", reason="checking")
    assert (await bob.request("search", query="bluebell"))["results"] == []
    await mod.request("mod_unhide", event_id=post, reason="fine")
    assert [r["event"]["event_id"] for r in (await bob.request("search", query="bluebell"))["results"]] == [post]
    with pytest.raises(PseudonymTaken):
        await (await SharonClient.connect(server.ws_url)).register(alice.pseudonym.replace("-", "_").upper(),
                                                                   PASSWORD)
    return c


@pytest.mark.integration
def test_notices_search_and_lookalikes_on_postgresql(pg_server, run):
    async def scenario():
        c = await _notice_and_search(pg_server)
        await c.close()

    run(scenario())


@pytest.mark.integration
def test_notice_positions_are_not_reused_after_a_restart(server, run):
    async def scenario():
        c = await _notice_and_search(server)
        alice = c.members[0]
        creds = [(m.pseudonym, m) for m in (c.mods[0], alice)]
        await c.close()
        return creds

    creds = run(scenario())
    server.restart()

    async def after():
        mod = await SharonClient.connect(server.ws_url)
        await mod.login(creds[0][0], PASSWORD)
        alice = await SharonClient.connect(server.ws_url)
        await alice.login(creds[1][0], PASSWORD)
        before = await alice.request("notifications")
        assert {n["reason"] for n in before["notifications"]} >= {"sanction", "moderated"}
        top = before["notifications"][0]  # the unhide's notice, recorded after the last event
        assert top["event_id"] is None and top["read"] is False
        rooms = [r["room_id"] for r in await alice.rooms() if r["kind"] == "chat"]
        sent = await alice.send(rooms[0], "after the restart", txn_id=txn())
        assert sent["pos"] > top["pos"]  # an event after the restart never takes a notice's position
        await mod.close()
        await alice.close()

    run(after())


def test_migration_0014_backfills_skeletons_oldest_account_first(tmp_path):
    """Accounts made before 0014 get their skeleton; of two existing look-alikes the older
    keeps it (the newer gets NULL), and the unique index then refuses a third."""
    import sqlalchemy as sa
    from alembic import command

    from sharon_server.storage.database import alembic_config

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0013")
        for user_id, name, ts in (("@b:x", "a1ice", 2), ("@a:x", "alice", 1), ("@c:x", "Bob", 3)):
            conn.execute(sa.text("INSERT INTO accounts VALUES (:u, :p, :k, 'h', :t)"),
                         {"u": user_id, "p": name, "k": name.casefold(), "t": ts})
        command.upgrade(cfg, "head")
        rows = dict(conn.execute(sa.text("SELECT user_id, pseudonym_skeleton FROM accounts")).all())
    assert rows == {"@a:x": pseudonym_skeleton("alice"), "@b:x": None, "@c:x": pseudonym_skeleton("Bob")}
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO accounts VALUES ('@d:x', 'al1ce', 'al1ce', 'h', 4, :s)"),
                         {"s": pseudonym_skeleton("al1ce")})
    engine.dispose()
