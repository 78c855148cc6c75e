"""Walls and the timeline: lazy wall rooms, who posts where, comments, follows across services."""

from __future__ import annotations

import pytest

from protocol.errors import BadField, Forbidden, NotFound, NotInRoom, TooLarge
from tests.helpers import user
from tests.test_content_support import close, service, txn

pytestmark = pytest.mark.integration


def test_walls_are_created_once_and_members_post_and_comment(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        mine = await alice.request("wall_open", service_id=svc)
        assert mine["owner"] == alice.user_id
        again = await alice.request("wall_open", service_id=svc)
        theirs = await bob.request("wall_open", service_id=svc, user_id=alice.user_id)
        assert again["room_id"] == mine["room_id"] == theirs["room_id"]
        wall = mine["room_id"]
        p1 = await alice.request("wall_post", room_id=wall, txn_id=txn(), body="First week home")
        p2 = await bob.request("wall_post", room_id=wall, txn_id=txn(), body="Congratulations!")
        c1 = await bob.request("comment", room_id=wall, txn_id=txn(), post_id=p1["event_id"], body="So lovely")
        listed = await alice.request("wall", room_id=wall)
        assert listed["owner"] == alice.user_id
        assert [p["event_id"] for p in listed["posts"]] == [p2["event_id"], p1["event_id"]]
        assert [p["comment_count"] for p in listed["posts"]] == [0, 1]
        assert listed["posts"][0]["wall_owner"] == alice.user_id
        comments = await alice.request("comments", room_id=wall, post_id=p1["event_id"])
        assert [c["event_id"] for c in comments["comments"]] == [c1["event_id"]]
        with pytest.raises(BadField) as exc:  # a comment on a comment
            await alice.request("comment", room_id=wall, txn_id=txn(), post_id=c1["event_id"], body="x")
        assert exc.value.field == "post_id"
        rooms = (await bob.request("service_rooms", service_id=svc))["rooms"]
        assert any(r["room_id"] == wall and r["kind"] == "wall" for r in rooms)
        await close(alice, bob, admin)

    run(scenario())


def test_service_wall_staff_post_members_comment(server, run):
    async def scenario():
        alice, mod = await user(server, "alice"), await user(server, "mod")
        admin, svc = await service(server, members=(alice,), staff=(mod,))
        wall = (await alice.request("wall_open", service_id=svc, service_wall=True))["room_id"]
        assert (await mod.request("wall_open", service_id=svc, service_wall=True))["room_id"] == wall
        with pytest.raises(Forbidden):
            await alice.request("wall_post", room_id=wall, txn_id=txn(), body="can I?")
        post = await mod.request("wall_post", room_id=wall, txn_id=txn(), body="Group on Tuesday")
        await alice.request("comment", room_id=wall, txn_id=txn(), post_id=post["event_id"], body="I'll come")
        assert (await alice.request("wall", room_id=wall))["posts"][0]["comment_count"] == 1
        with pytest.raises(BadField):
            await alice.request("wall_open", service_id=svc, service_wall=True, user_id=mod.user_id)
        await close(alice, mod, admin)

    run(scenario())


def test_walls_of_another_service_stay_closed(server, run):
    async def scenario():
        alice, eve = await user(server, "alice"), await user(server, "eve")
        admin, svc = await service(server, members=(alice,))
        admin2, other = await service(server, members=(eve,), name="Carers")
        wall = (await alice.request("wall_open", service_id=svc))["room_id"]
        post = await alice.request("wall_post", room_id=wall, txn_id=txn(), body="private to us")
        with pytest.raises(Forbidden):
            await eve.request("wall_open", service_id=svc, user_id=alice.user_id)
        with pytest.raises(NotFound):  # alice has no wall in eve's service
            await eve.request("wall_open", service_id=other, user_id=alice.user_id)
        with pytest.raises(Forbidden):
            await eve.join(wall)
        with pytest.raises(NotInRoom):
            await eve.request("wall", room_id=wall)
        with pytest.raises(NotInRoom):
            await eve.request("wall_post", room_id=wall, txn_id=txn(), body="hi")
        with pytest.raises(NotInRoom):
            await eve.request("comment", room_id=wall, txn_id=txn(), post_id=post["event_id"], body="hi")
        with pytest.raises(Forbidden):
            await eve.request("follow", service_id=svc, user_id=alice.user_id)
        await close(alice, eve, admin, admin2)

    run(scenario())


def test_timeline_merges_followed_walls_within_shared_services(server, run):
    async def scenario():
        alice, bob, carol, dave = [await user(server, n) for n in ("alice", "bob", "carol", "dave")]
        admin, svc = await service(server, members=(alice, bob, carol), staff=(dave,))
        admin2, other = await service(server, members=(alice, bob), name="Carers")
        await alice.request("follow", service_id=svc, user_id=bob.user_id)
        await alice.request("follow", service_id=svc, user_id=bob.user_id)  # repeat: a no-op
        following = (await alice.request("following"))["following"]
        assert [(f["service_id"], f["user_id"]) for f in following] == [(svc, bob.user_id)]

        async def post(client, service_id, owner=None, body="x", service_wall=False):
            fields = {"service_wall": True} if service_wall else ({"user_id": owner} if owner else {})
            wall = (await client.request("wall_open", service_id=service_id, **fields))["room_id"]
            return (await client.request("wall_post", room_id=wall, txn_id=txn(), body=body))["event_id"]

        own = await post(alice, svc, body="mine")
        bobs = await post(bob, svc, body="bob in perinatal")
        await post(carol, svc, body="carol, not followed")
        on_bobs = await post(carol, svc, owner=bob.user_id, body="carol on bob's wall")
        await post(bob, other, body="bob in carers, not followed there")
        notice = await post(dave, svc, service_wall=True, body="service news")
        timeline = await alice.request("timeline")
        assert [p["event_id"] for p in timeline["posts"]] == [notice, on_bobs, bobs, own]
        page = await alice.request("timeline", limit=2)
        rest = await alice.request("timeline", limit=2, before=page["next"])
        assert [p["event_id"] for p in page["posts"] + rest["posts"]] == [notice, on_bobs, bobs, own]
        only = await alice.request("timeline", service_id=other)
        assert only["posts"] == []
        outsider = await user(server, "outsider")
        with pytest.raises(Forbidden):
            await outsider.request("timeline", service_id=svc)
        assert (await outsider.request("timeline"))["posts"] == []
        await alice.request("unfollow", service_id=svc, user_id=bob.user_id)
        with pytest.raises(NotFound):
            await alice.request("unfollow", service_id=svc, user_id=bob.user_id)
        assert [p["event_id"] for p in (await alice.request("timeline"))["posts"]] == [notice, own]
        with pytest.raises(BadField):
            await alice.request("follow", service_id=svc, user_id=alice.user_id)
        with pytest.raises(NotFound):
            await alice.request("follow", service_id=svc, user_id=outsider.user_id)
        await close(alice, bob, carol, dave, admin, admin2, outsider)

    run(scenario())


def test_wall_limits_and_wrong_kinds(server, run):
    async def scenario():
        alice = await user(server, "alice")
        admin, svc = await service(server, members=(alice,), settings={"char_limits": {"wall": 20}})
        wall = (await alice.request("wall_open", service_id=svc))["room_id"]
        with pytest.raises(TooLarge) as exc:
            await alice.request("wall_post", room_id=wall, txn_id=txn(), body="y" * 21)
        assert exc.value.field == "body" and "20" in exc.value.reason
        post = await alice.request("wall_post", room_id=wall, txn_id=txn(), body="y" * 20)
        with pytest.raises(TooLarge):
            await alice.request("comment", room_id=wall, txn_id=txn(), post_id=post["event_id"], body="z" * 21)
        forum = (await alice.request("create_room", kind="forum", name="F", service_id=svc))["room_id"]
        with pytest.raises(BadField) as exc:
            await alice.request("wall_post", room_id=forum, txn_id=txn(), body="x")
        assert exc.value.field == "room_id"
        with pytest.raises(BadField) as exc:
            await alice.request("thread_create", room_id=wall, txn_id=txn(), title="t", body="x")
        assert exc.value.field == "room_id"
        with pytest.raises(BadField) as exc:
            await alice.request("wall_post", room_id=wall, txn_id=txn(), body=["not", "a", "string"])
        assert exc.value.field == "body"
        await close(alice, admin)

    run(scenario())


def test_concurrent_first_opens_make_one_wall(server, run):
    async def scenario():
        import asyncio

        alice, bob, carol = [await user(server, n) for n in ("alice", "bob", "carol")]
        admin, svc = await service(server, members=(alice, bob, carol))
        opened = await asyncio.gather(*(c.request("wall_open", service_id=svc, user_id=alice.user_id)
                                        for c in (alice, bob, carol)))
        assert len({o["room_id"] for o in opened}) == 1
        walls = [r for r in (await alice.request("service_rooms", service_id=svc))["rooms"] if r["kind"] == "wall"]
        assert len(walls) == 1 and walls[0]["members"] == 3
        await close(alice, bob, carol, admin)

    run(scenario())
