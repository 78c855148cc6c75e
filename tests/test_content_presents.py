"""Reactions on any post or message, and presents from the admins' catalogue."""

from __future__ import annotations

import pytest

from protocol.errors import BadField, Conflict, Forbidden, NotFound, NotInRoom
from tests.helpers import user
from tests.test_content_support import close, room_in, service, txn

pytestmark = pytest.mark.integration


def test_reactions_one_per_key_removable_on_messages_and_posts(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        chat = await room_in(alice, svc, "chat", bob)
        forum = await room_in(alice, svc, "forum", bob)
        msg = await alice.send(chat, "made it through the night")
        await bob.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"], key="heart")
        await alice.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"], key="heart")
        await bob.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"], key="hug")
        with pytest.raises(Conflict) as exc:
            await bob.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"], key="heart")
        assert exc.value.field == "key"
        got = (await bob.request("reactions", room_id=chat, event_id=msg["event_id"]))["reactions"]
        assert got == [{"key": "heart", "count": 2, "mine": True}, {"key": "hug", "count": 1, "mine": True}]
        t = txn()
        first = await bob.request("unreact", room_id=chat, txn_id=t, target=msg["event_id"], key="heart")
        replay = await bob.request("unreact", room_id=chat, txn_id=t, target=msg["event_id"], key="heart")
        assert replay["event_id"] == first["event_id"] and replay["duplicate"] is True
        with pytest.raises(NotFound):
            await bob.request("unreact", room_id=chat, txn_id=txn(), target=msg["event_id"], key="heart")
        got = (await alice.request("reactions", room_id=chat, event_id=msg["event_id"]))["reactions"]
        assert got == [{"key": "heart", "count": 1, "mine": True}, {"key": "hug", "count": 1, "mine": False}]
        thread = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="T", body="b")
        await bob.request("react", room_id=forum, txn_id=txn(), target=thread["event_id"], key="+1")
        listed = (await alice.request("threads", room_id=forum))["threads"][0]
        assert listed["reactions"] == [{"key": "+1", "count": 1, "mine": False}]
        with pytest.raises(BadField) as exc:  # the target must be in the same room
            await bob.request("react", room_id=forum, txn_id=txn(), target=msg["event_id"], key="x")
        assert exc.value.field == "target"
        with pytest.raises(BadField) as exc:
            await bob.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"], key="k" * 33)
        assert exc.value.field == "key"
        with pytest.raises(BadField) as exc:
            await bob.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"], key=7)
        assert exc.value.field == "key"
        eve = await user(server, "eve")
        with pytest.raises(NotInRoom):
            await eve.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"], key="heart")
        with pytest.raises(NotInRoom):
            await eve.request("reactions", room_id=chat, event_id=msg["event_id"])
        await close(alice, bob, eve, admin)

    run(scenario())


def test_presents_catalogue_is_maintained_by_admins(server, run):
    async def scenario():
        alice = await user(server, "alice")
        admin, svc = await service(server, members=(alice,))
        with pytest.raises(Forbidden):
            await alice.request("present_add", name="Flowers")
        with pytest.raises(Forbidden):
            await alice.request("present_add", name="Flowers", service_id=svc)
        flowers = await admin.request("present_add", name="Flowers", picture_media="sha256:abc")
        tea = await admin.request("present_add", name="Cup of tea", service_id=svc)
        assert flowers["service_id"] is None and tea["service_id"] == svc
        names = [p["name"] for p in (await alice.request("presents", service_id=svc))["presents"]]
        assert names == ["Flowers", "Cup of tea"]
        assert [p["name"] for p in (await alice.request("presents"))["presents"]] == ["Flowers"]
        with pytest.raises(Forbidden):
            await alice.request("present_remove", present_id=tea["present_id"])
        await admin.request("present_remove", present_id=tea["present_id"])
        with pytest.raises(NotFound):
            await admin.request("present_remove", present_id=tea["present_id"])
        assert [p["name"] for p in (await alice.request("presents", service_id=svc))["presents"]] == ["Flowers"]
        with pytest.raises(BadField):
            await admin.request("present_add", name="")
        await close(alice, admin)

    run(scenario())


def test_presents_land_on_the_recipients_wall_or_on_a_post(server, run):
    async def scenario():
        alice, bob, eve = await user(server, "alice"), await user(server, "bob"), await user(server, "eve")
        admin, svc = await service(server, members=(alice, bob))
        admin2, other = await service(server, members=(eve,), name="Carers")
        flowers = (await admin.request("present_add", name="Flowers", picture_media="sha256:abc"))["present_id"]
        elsewhere = (await admin2.request("present_add", name="Theirs", service_id=other))["present_id"]
        sent = await alice.request("present_send", present_id=flowers, txn_id=txn(), service_id=svc,
                                   to_user=bob.user_id, message="Well done")
        bobs_wall = (await bob.request("wall_open", service_id=svc))["room_id"]
        assert sent["room_id"] == bobs_wall
        posts = (await bob.request("wall", room_id=bobs_wall))["posts"]
        assert [p["type"] for p in posts] == ["ps.present"]
        assert posts[0]["content"] == {"present_id": flowers, "name": "Flowers", "picture_media": "sha256:abc",
                                       "to_user": bob.user_id, "message": "Well done"}
        assert posts[0]["sender"] == alice.user_id and posts[0]["wall_owner"] == bob.user_id
        post = await bob.request("wall_post", room_id=bobs_wall, txn_id=txn(), body="Thank you all")
        attached = await alice.request("present_send", present_id=flowers, txn_id=txn(), room_id=bobs_wall,
                                       post_id=post["event_id"])
        assert attached["room_id"] == bobs_wall
        listed = {p["event_id"]: p for p in (await bob.request("wall", room_id=bobs_wall))["posts"]}
        assert listed[post["event_id"]]["present_count"] == 1
        with pytest.raises(NotFound):  # not in this service's catalogue
            await alice.request("present_send", present_id=elsewhere, txn_id=txn(), service_id=svc,
                                to_user=bob.user_id)
        with pytest.raises(NotFound):
            await alice.request("present_send", present_id="p_made_up", txn_id=txn(), service_id=svc,
                                to_user=bob.user_id)
        with pytest.raises(NotFound):  # not a member of the service
            await alice.request("present_send", present_id=flowers, txn_id=txn(), service_id=svc,
                                to_user=eve.user_id)
        with pytest.raises(Forbidden):
            await eve.request("present_send", present_id=flowers, txn_id=txn(), service_id=svc,
                              to_user=bob.user_id)
        with pytest.raises(BadField):
            await alice.request("present_send", present_id=flowers, txn_id=txn(), service_id=svc)
        alices_wall = (await alice.request("wall_open", service_id=svc))["room_id"]
        with pytest.raises(BadField):  # a present for bob cannot be put on alice's wall
            await alice.request("present_send", present_id=flowers, txn_id=txn(), room_id=alices_wall,
                                post_id=sent["event_id"])
        await admin.request("present_remove", present_id=flowers)
        with pytest.raises(NotFound):
            await alice.request("present_send", present_id=flowers, txn_id=txn(), service_id=svc,
                                to_user=bob.user_id)
        await close(alice, bob, eve, admin, admin2)

    run(scenario())


def test_racing_duplicate_reactions_never_break_the_commit(server, run):
    async def scenario():
        import asyncio

        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        chat = await room_in(alice, svc, "chat", bob)
        msg = await alice.send(chat, "hi")
        results = await asyncio.gather(*(bob.request("react", room_id=chat, txn_id=txn(), target=msg["event_id"],
                                                     key="heart") for _ in range(5)), return_exceptions=True)
        assert any(isinstance(r, dict) for r in results)
        assert all(isinstance(r, (dict, Conflict)) for r in results), results
        got = (await alice.request("reactions", room_id=chat, event_id=msg["event_id"]))["reactions"]
        assert got == [{"key": "heart", "count": 1, "mine": False}]
        await alice.send(chat, "still writable")  # no failed batch, no reload
        await close(alice, bob, admin)

    run(scenario())


def test_presents_comments_and_reactions_reach_the_recipients_notifications(server, run):
    async def scenario():
        from protocol.errors import UnknownOp

        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        try:
            await bob.request("notifications")
        except UnknownOp:
            pytest.skip("the notifications feature is not installed")
        tea = (await admin.request("present_add", name="Tea"))["present_id"]
        gift = await alice.request("present_send", present_id=tea, txn_id=txn(), service_id=svc, to_user=bob.user_id)
        wall = gift["room_id"]
        post = await bob.request("wall_post", room_id=wall, txn_id=txn(), body="Thank you")
        comment = await alice.request("comment", room_id=wall, txn_id=txn(), post_id=post["event_id"], body="x")
        react = await alice.request("react", room_id=wall, txn_id=txn(), target=post["event_id"], key="heart")
        notes = (await bob.request("notifications"))["notifications"]
        got = {(n["reason"], n["event_id"]) for n in notes}
        assert {("present", gift["event_id"]), ("comment", comment["event_id"]),
                ("reaction", react["event_id"])} <= got
        assert all(n["actor"] == alice.user_id for n in notes)
        assert not any(n["event_id"] == post["event_id"] for n in notes)  # not for his own post
        await close(alice, bob, admin)

    run(scenario())
