"""Mentions, notifications, search and hashtags against the real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from protocol.errors import BadField, Forbidden, NotInRoom
from tests.helpers import user
from tests.test_services import grant_admin

pytestmark = pytest.mark.integration


async def _service(server, *members, settings=None, staff=()):
    """An admin, a new service with ``members`` (and ``staff`` as moderators); returns (admin, id)."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    created = await admin.request("create_service", name="Peers " + uuid.uuid4().hex[:6],
                                  **({"settings": settings} if settings else {}))
    service = created["service_id"]
    for m in members:
        await admin.request("service_add_member", service_id=service, user_id=m.user_id)
    for m in staff:
        await admin.request("service_add_member", service_id=service, user_id=m.user_id, role="moderator")
    return admin, service


async def _room(owner, service, *members, public=True):
    room = (await owner.request("create_room", kind="chat", name="Evening", public=public,
                                service_id=service))["room_id"]
    for m in members:
        if not public:
            await owner.invite(room, m.user_id)
        await m.join(room)
    return room


async def _notification(client, timeout_s=20.0):
    """The next pushed notification frame's payload."""
    while True:
        frame = await client.next_frame(timeout_s)
        if frame.get("op") == "notification":
            return frame["notification"]


async def _close(*clients):
    for c in clients:
        await c.close()


def test_mentions_resolve_within_the_service_and_notify_live(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        outsider = await user(server, "outsider")
        admin, service = await _service(server, alice, bob)
        room = await _room(alice, service, bob)
        await bob.sync()
        await outsider.sync()
        # bob's pseudonym in another case, an unknown name, an outsider, an e-mail, herself
        body = (f"hi @{bob.pseudonym.upper()} and @{outsider.pseudonym} and @nobody-here "
                f"mail x@{bob.pseudonym}.org @{alice.pseudonym}")
        sent = await alice.send(room, body)
        event = await bob.next_event(20)
        while event["type"] != "m.room.message":
            event = await bob.next_event(20)
        assert event["content"]["mentions"] == [bob.user_id]
        note = await _notification(bob)
        assert note["reason"] == "mention" and note["event_id"] == sent["event_id"]
        assert note["actor"] == alice.user_id and note["actor_pseudonym"] == alice.pseudonym
        assert note["room_id"] == room and note["read"] is False and note["unread"] == 1
        assert set(note) == {"pos", "reason", "room_id", "event_id", "actor", "actor_pseudonym", "ts", "read",
                             "unread"}
        assert (await outsider.request("notifications"))["notifications"] == []
        assert (await alice.request("notifications"))["notifications"] == []  # never yourself
        # the mention is part of the signed event everybody stores
        history = (await bob.history(room, limit=1))["events"]
        assert history[0]["content"]["mentions"] == [bob.user_id]
        await _close(alice, bob, outsider, admin)

    run(scenario())


def test_mentions_outside_services_need_the_room(server, run):
    async def scenario():
        alice, bob, carol = await user(server, "alice"), await user(server, "bob"), await user(server, "carol")
        room = (await alice.create_room("chat", "Open", public=True))["room_id"]
        await bob.join(room)
        await alice.send(room, f"@{bob.pseudonym} @{carol.pseudonym}")
        assert [n["reason"] for n in (await bob.request("notifications"))["notifications"]] == ["mention"]
        assert (await carol.request("notifications"))["notifications"] == []
        await _close(alice, bob, carol)

    run(scenario())


def test_notifications_are_paged_newest_first_with_unread_counts(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        room = (await alice.create_room("chat", "Pair", public=True))["room_id"]
        await bob.join(room)
        sent = [await alice.send(room, f"@{bob.pseudonym} number {i}") for i in range(5)]
        page1 = await bob.request("notifications", limit=2)
        assert page1["unread"] == 5
        assert [n["event_id"] for n in page1["notifications"]] == [s["event_id"] for s in sent[::-1][:2]]
        page2 = await bob.request("notifications", limit=2, before=page1["next"])
        assert [n["event_id"] for n in page2["notifications"]] == [s["event_id"] for s in sent[::-1][2:4]]
        page3 = await bob.request("notifications", limit=2, before=page2["next"])
        assert [n["event_id"] for n in page3["notifications"]] == [sent[0]["event_id"]] and page3["next"] is None
        assert (await bob.request("notifications_read", upto=sent[1]["pos"]))["unread"] == 3
        unread = await bob.request("notifications", unread_only=True)
        assert [n["event_id"] for n in unread["notifications"]] == [s["event_id"] for s in sent[:1:-1]]
        assert (await bob.request("notifications_read"))["unread"] == 0
        assert all(n["read"] for n in (await bob.request("notifications"))["notifications"])
        with pytest.raises(BadField):
            await bob.request("notifications", limit=0)
        await _close(alice, bob)

    run(scenario())


def test_search_sees_only_rooms_the_member_is_joined_to(server, run):
    async def scenario():
        alice, bob, eve = await user(server, "alice"), await user(server, "bob"), await user(server, "eve")
        admin1, s1 = await _service(server, alice, bob)
        admin2, s2 = await _service(server, eve)
        room1 = await _room(alice, s1, bob)
        private = await _room(alice, s1, public=False)
        room2 = await _room(eve, s2)
        await alice.send(room1, "Breathing exercises helped with the panic tonight")
        await alice.send(private, "private note about breathing")
        await eve.send(room2, "breathing in service two")
        hits = (await bob.request("search", query="breathing"))["results"]
        assert [h["event"]["room_id"] for h in hits] == [room1]
        assert "[" in hits[0]["snippet"] and hits[0]["event"]["content"]["body"].startswith("Breathing")
        mine = (await alice.request("search", query="BREATHING"))["results"]
        assert {h["event"]["room_id"] for h in mine} == {room1, private}
        assert [h["event"]["room_id"] for h in (await eve.request("search", query="breathing"))["results"]] == [room2]
        assert (await eve.request("search", query="breathing", service_id=s1))["results"] == []
        with pytest.raises(NotInRoom):
            await eve.request("search", query="breathing", room_id=room1)
        only = (await alice.request("search", query="breath", room_id=private))["results"]  # prefix
        assert [h["event"]["room_id"] for h in only] == [private]
        # after leaving, the room's messages are out of reach
        await bob.leave(room1)
        assert (await bob.request("search", query="breathing"))["results"] == []
        await _close(alice, bob, eve, admin1, admin2)

    run(scenario())


HOSTILE = [
    '"', "'", "breathing' OR 1=1 --", '") OR 1=1; DROP TABLE events; --', "NEAR(a b)", "body:panic",
    "*", "a AND OR NOT", "^panic", "{panic}", "panic\x00", "(((", "\\", "% _", "'; SELECT * FROM accounts; --",
]


def test_hostile_queries_are_harmless(server, run):
    async def scenario():
        alice = await user(server, "alice")
        room = (await alice.create_room("chat", "Mine", public=False))["room_id"]
        await alice.send(room, "panic and breathing")
        for query in HOSTILE:
            try:
                result = await alice.request("search", query=query)
            except BadField:
                continue  # nothing to search for is a clean refusal
            for hit in result["results"]:
                assert hit["event"]["room_id"] == room
        assert len((await alice.request("search", query='panic" OR "x'))["results"]) == 0
        assert len((await alice.request("search", query="body:panic"))["results"]) == 0  # 'body' is just a word
        assert len((await alice.request("search", query="panic!!"))["results"]) == 1
        assert (await alice.send(room, "still alive"))["event_id"]
        await alice.close()

    run(scenario())


def test_tags_browse_and_trending_needs_approval_and_the_setting(server, run):
    async def scenario():
        alice, bob, mod, outsider = (await user(server, "alice"), await user(server, "bob"),
                                     await user(server, "mod"), await user(server, "outsider"))
        admin, service = await _service(server, alice, bob, staff=(mod,))
        room = await _room(alice, service, bob)
        first = await alice.send(room, "Tonight #Sleep was hard #selfcare")
        second = await bob.send(room, "same here #sleep, see https://x.org/#sleep and a@b.co#nope")
        posts = await bob.request("tag_posts", service_id=service, tag="#SLEEP")
        assert [e["event_id"] for e in posts["events"]] == [second["event_id"], first["event_id"]]
        older = await bob.request("tag_posts", service_id=service, tag="sleep", before=second["pos"])
        assert [e["event_id"] for e in older["events"]] == [first["event_id"]]
        assert (await bob.request("tag_posts", service_id=service, tag="nope"))["events"] == []
        with pytest.raises(Forbidden):
            await outsider.request("tag_posts", service_id=service, tag="sleep")
        # nothing trends until staff approve it
        assert (await bob.request("trending", service_id=service))["tags"] == []
        with pytest.raises(Forbidden):
            await bob.request("tag_candidates", service_id=service)
        with pytest.raises(Forbidden):
            await bob.request("tag_approve", service_id=service, tag="sleep")
        candidates = await mod.request("tag_candidates", service_id=service)
        assert candidates["candidates"] == [{"tag": "sleep", "count": 2}, {"tag": "selfcare", "count": 1}]
        await mod.request("tag_approve", service_id=service, tag="#Sleep")
        assert (await bob.request("trending", service_id=service))["tags"] == [{"tag": "sleep", "count": 2}]
        candidates = await mod.request("tag_candidates", service_id=service)
        assert candidates["candidates"] == [{"tag": "selfcare", "count": 1}] and candidates["approved"] == ["sleep"]
        await alice.send(room, "#sleep again")
        assert (await bob.request("trending", service_id=service))["tags"] == [{"tag": "sleep", "count": 3}]
        with pytest.raises(Forbidden):
            await bob.request("tag_revoke", service_id=service, tag="sleep")
        assert (await mod.request("tag_revoke", service_id=service, tag="sleep"))["revoked"] is True
        assert (await bob.request("trending", service_id=service))["tags"] == []
        assert (await mod.request("tag_revoke", service_id=service, tag="sleep"))["revoked"] is False
        await mod.request("tag_approve", service_id=service, tag="sleep")
        # the service can switch trending off
        await admin.request("service_settings", service_id=service, settings={"trending": False})
        off = await bob.request("trending", service_id=service)
        assert off["enabled"] is False and off["tags"] == []
        with pytest.raises(Forbidden):
            await outsider.request("trending", service_id=service)
        await _close(alice, bob, mod, outsider, admin)

    run(scenario())


def test_trending_approvals_search_and_unread_counts_survive_a_restart(server, run):
    async def first():
        alice, bob, mod = await user(server, "alice"), await user(server, "bob"), await user(server, "mod")
        admin, service = await _service(server, alice, bob, staff=(mod,))
        room = await _room(alice, service, bob)
        await alice.send(room, f"#walks are good #walks @{bob.pseudonym}")
        await mod.request("tag_approve", service_id=service, tag="walks")
        await _close(alice, mod, admin, bob)
        return bob.token, service

    token, service = run(first())
    server.restart()

    async def second():
        from clients.client import SharonClient

        bob = await SharonClient.connect(server.ws_url)
        await bob.auth(token)
        assert (await bob.request("trending", service_id=service))["tags"] == [{"tag": "walks", "count": 1}]
        assert len((await bob.request("search", query="walks"))["results"]) == 1
        await bob.sync()
        room = (await bob.request("search", query="walks"))["results"][0]["event"]["room_id"]
        other = await user(server, "carol")
        await server_add(server, service, other)
        await other.join(room)
        await other.send(room, f"hello @{bob.pseudonym}")
        note = await _notification(bob)
        assert note["unread"] == 2  # the count from before the restart was loaded
        await _close(bob, other)

    run(second())


async def server_add(server, service, member):
    """Add ``member`` to ``service`` as a fresh server admin."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    await admin.request("service_add_member", service_id=service, user_id=member.user_id)
    await admin.close()


@pytest.mark.postgres
def test_search_and_mentions_on_postgresql(pg_server, run):
    async def scenario():
        alice, bob, eve = await user(pg_server, "alice"), await user(pg_server, "bob"), await user(pg_server, "eve")
        room = (await alice.create_room("chat", "Pg", public=True))["room_id"]
        other = (await eve.create_room("chat", "Eve's", public=False))["room_id"]
        await bob.join(room)
        await alice.send(room, f"Breathing helps @{bob.pseudonym}")
        await eve.send(other, "breathing alone")
        hits = (await bob.request("search", query="breathing"))["results"]
        assert [h["event"]["room_id"] for h in hits] == [room]
        for query in HOSTILE:
            try:
                await bob.request("search", query=query)
            except BadField:
                pass
        assert (await bob.request("notifications"))["unread"] == 1
        await _close(alice, bob, eve)

    run(scenario())


def test_cli_commands(server, tmp_path):
    from tests.test_cli import User

    admin = User(server, tmp_path / "admin", "admin").register()
    alice = User(server, tmp_path / "alice", "alice").register()
    bob = User(server, tmp_path / "bob", "bob").register()
    grant_admin(server, admin.pseudonym)
    service = admin.ok("create-service", "Carers").strip()
    admin.ok("service-add", service, alice.user_id)
    admin.ok("service-add", service, bob.user_id)
    room = alice.ok("create-room", "Kitchen", "--kind", "chat", "--public", "--service", service).strip()
    bob.ok("join", room)
    sent = alice.ok("send", room, f"@{bob.pseudonym} the #Respite group was lovely").strip()
    listed = bob.ok("notifications").splitlines()
    assert listed[-1] == "unread: 1" and sent in listed[0] and "mention" in listed[0]
    assert "Respite group" in bob.ok("search", "respite", "--room", room)
    assert bob.ok("search", "respite", "--service", service).count("\n") == 1
    assert "Respite group" in bob.ok("tags", service, "#respite")
    assert bob.ok("mark-read-notifications").strip() == "unread: 0"
    assert bob.ok("notifications", "--unread").splitlines() == ["unread: 0"]
    assert bob.ok("trending", service) == ""
    refused = bob.run("tag-candidates", service)
    assert refused.returncode != 0 and "forbidden" in refused.stderr
    assert admin.ok("tag-candidates", service).split() == ["#respite", "1"]
    assert admin.ok("approve-tag", service, "Respite").strip() == "#respite"
    assert bob.ok("trending", service).split() == ["#respite", "1"]
    assert admin.ok("revoke-tag", service, "#respite").strip() == "#respite"
    assert bob.ok("trending", service) == ""


class _Conn:
    def __init__(self):
        self.frames = []

    def reply(self, frame):
        self.frames.append(frame)


def _fake_social(members_of_service=(), joined=()):
    """A Social over fakes: accounts, one room, a service directory and a hub."""
    from types import SimpleNamespace

    from sharon_server.features.social import Social, _SocialObserver

    pseudonyms = {"@a:x": "Alice", "@b:x": "Bob", "@c:x": "Carol"}
    state = SimpleNamespace(membership=lambda u: "join" if u in joined else None, join_rule=lambda: "public")
    conn = _Conn()
    ctx = SimpleNamespace(
        rooms=SimpleNamespace(rooms={"!r:x": state}), config=None, now_ms=lambda: 0,
        accounts=SimpleNamespace(pseudonyms=pseudonyms, pseudonym_of=pseudonyms.get),
        services=SimpleNamespace(is_member=lambda s, u: u in members_of_service),
        hub=SimpleNamespace(user_conns={"@b:x": {conn}}),
        db=SimpleNamespace(engine=None, read_engine=None, dialect="sqlite"),
    )
    social = Social(ctx)
    return social, _SocialObserver(social), conn


def _send_ctx(content, scratch, sender="@a:x"):
    from types import SimpleNamespace

    from sharon_server.event_types import SendContext

    return SendContext(session=SimpleNamespace(user_id=sender), room_id="!r:x", kind="chat", state=None,
                       etype="m.room.message", content=content, scratch=scratch)


def test_observer_notifies_once_per_member_never_the_sender_and_pushes_live():
    social, observer, conn = _fake_social(members_of_service={"@a:x", "@b:x"})
    content = {"body": "@bob @BOB @carol @alice #Hope", "mentions": ["@c:x"]}  # a forged list is replaced
    ctx = _send_ctx(content, {"service": "!s:x", "notify": [("@b:x", "reply"), ("@a:x", "reply"),
                                                            ("@nobody:x", "reply")]})
    observer.prepare(ctx)
    assert content["mentions"] == ["@b:x"]  # carol is not in the service; alice is the sender
    derived = observer.derive(ctx, "$e", 7, {"origin_server_ts": 5})
    by_table = {stmt.table.name: params for stmt, params in derived}
    assert [(r["user_id"], r["reason"]) for r in by_table["notifications"]] == [("@b:x", "reply")]
    assert [r["tag"] for r in by_table["social_tags"]] == ["hope"]
    assert by_table["search_docs"][0]["body"] == content["body"]
    observer.committed(ctx, "$e", 7, {"origin_server_ts": 5})
    assert [f["notification"]["reason"] for f in conn.frames] == ["reply"]
    assert conn.frames[0]["notification"]["unread"] == 1 and social.unread == {"@b:x": 1}
    assert social.window("!s:x").top(5, 5) == [("hope", 1)]


def test_observer_outside_services_needs_the_room_and_skips_state_events():
    social, observer, _ = _fake_social(joined={"@a:x", "@c:x"})
    content = {"body": "@bob @carol #notag"}
    ctx = _send_ctx(content, {"service": None})
    observer.prepare(ctx)
    assert content["mentions"] == ["@c:x"] and "social_tags" not in ctx.scratch
    state_ctx = _send_ctx({"name": "x", "mentions": ["@b:x"]}, {"service": None})
    state_ctx.state_key = ""
    observer.prepare(state_ctx)
    assert observer.derive(state_ctx, "$s", 8, {"origin_server_ts": 1}) == []


def test_migration_backfills_search_docs_for_older_events(tmp_path):
    import json as _json

    import sqlalchemy as sa
    from alembic import command

    from sharon_server.storage.database import alembic_config, open_database
    from sharon_server.storage.social import SocialStore, ensure_search_index

    async def go():
        db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        async with db.engine.begin() as conn:
            def down(c):
                cfg = alembic_config()
                cfg.attributes["connection"] = c
                command.downgrade(cfg, "0003")

            await conn.run_sync(down)
            for pos, content in ((1, {"body": "old breathing note"}), (2, {}), (3, {"title": "Breathing", "body": "x"})):
                raw = _json.dumps({"type": "m.room.message", "content": content}).encode()
                await conn.execute(sa.text(
                    "INSERT INTO events (pos, event_id, room_id, type, state_key, sender, origin_server_ts, json) "
                    "VALUES (:p, :e, '!r:x', 'm.room.message', NULL, '@a:x', 1, :j)"), {"p": pos, "e": f"$e{pos}", "j": raw})
        await db.migrate()
        assert await ensure_search_index(db.engine, db.dialect) is True
        assert await ensure_search_index(db.engine, db.dialect) is False
        hits = await SocialStore(db).search(["breathing"], ["!r:x"], None, 10)
        await db.close()
        return [h[0] for h in hits]

    assert asyncio.run(go()) == [3, 1]


def test_forum_replies_notify_the_author_are_searchable_and_tagged(server, run):
    """Content events flow through the social observer: notify reasons, title text, tags."""

    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, service = await _service(server, alice, bob)
        forum = (await alice.request("create_room", kind="forum", name="Forum", public=True,
                                     service_id=service))["room_id"]
        await bob.join(forum)
        await alice.sync()
        thread = await alice.request("thread_create", room_id=forum, txn_id="t1", title="Insomnia tips",
                                     body="What helps? #sleep")
        reply = await bob.request("thread_reply", room_id=forum, txn_id="r1", thread_id=thread["event_id"],
                                  body=f"A routine, @{alice.pseudonym}")
        note = await _notification(alice)
        assert (note["reason"], note["event_id"], note["actor"]) == ("reply", reply["event_id"], bob.user_id)
        assert (await alice.request("notifications"))["unread"] == 1  # reply and mention: one notification
        hits = (await bob.request("search", query="insomnia"))["results"]
        assert [h["event"]["event_id"] for h in hits] == [thread["event_id"]]
        posts = await bob.request("tag_posts", service_id=service, tag="sleep")
        assert [e["event_id"] for e in posts["events"]] == [thread["event_id"]]
        await _close(alice, bob, admin)

    run(scenario())


def test_request_parsing_normalises_tags_and_refuses_bad_fields():
    from protocol import social as P
    from protocol.errors import MissingField
    from protocol.frames import parse_request

    room = "!" + "A" * 43
    req = parse_request({"op": "tag_posts", "id": 1, "service_id": room, "tag": "#SelfCare"})
    assert isinstance(req, P.TagPosts) and req.tag == "selfcare" and req.limit == 20 and req.before is None
    for tag in ("", "#", "#123", "a b", "#a-b", "x" * 70, 5):
        with pytest.raises(BadField):
            parse_request({"op": "tag_approve", "id": 1, "service_id": room, "tag": tag})
    for query in ("", "   ", "x" * 501, 7):
        with pytest.raises(BadField):
            parse_request({"op": "search", "id": 1, "query": query})
    with pytest.raises(MissingField):
        parse_request({"op": "search", "id": 1})
    with pytest.raises(BadField):
        parse_request({"op": "notifications", "id": 1, "limit": 101})
    with pytest.raises(BadField):
        parse_request({"op": "notifications_read", "id": 1, "upto": "all"})
    search = parse_request({"op": "search", "id": 1, "query": "x", "room_id": None, "service_id": room})
    assert search.room_id is None and str(search.service_id) == room
