"""Content on PostgreSQL, and the wall index and derived rows surviving a restart."""

from __future__ import annotations


import pytest

from clients.client import SharonClient
from tests.helpers import PASSWORD, user
from tests.test_content_support import close, room_in, service, txn

pytestmark = pytest.mark.integration


async def _everything(server):
    """Exercise every content kind once; returns what a later check needs."""
    alice, bob, mod = await user(server, "alice"), await user(server, "bob"), await user(server, "mod")
    admin, svc = await service(server, members=(alice, bob), staff=(mod,))
    forum = await room_in(alice, svc, "forum", bob, mod)
    t1 = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="One", body="b")
    t2 = await alice.request("thread_create", room_id=forum, txn_id=txn(), title="Two", body="b")
    await bob.request("thread_reply", room_id=forum, txn_id=txn(), thread_id=t1["event_id"], body="r")
    await mod.request("thread_state", room_id=forum, thread_id=t2["event_id"], pinned=True, locked=True)
    listed = (await bob.request("threads", room_id=forum))["threads"]
    assert [(t["event_id"], t["pinned"], t["reply_count"]) for t in listed] == \
        [(t2["event_id"], True, 0), (t1["event_id"], False, 1)]
    await bob.request("react", room_id=forum, txn_id=txn(), target=t1["event_id"], key="heart")
    await bob.request("unreact", room_id=forum, txn_id=txn(), target=t1["event_id"], key="heart")
    await bob.request("react", room_id=forum, txn_id=txn(), target=t1["event_id"], key="hug")
    wall = (await alice.request("wall_open", service_id=svc))["room_id"]
    post = await alice.request("wall_post", room_id=wall, txn_id=txn(), body="hello")
    await bob.request("follow", service_id=svc, user_id=alice.user_id)
    assert [p["event_id"] for p in (await bob.request("timeline"))["posts"]] == [post["event_id"]]
    blog = await room_in(alice, svc, "blog", bob)
    draft = (await alice.request("blog_draft_save", room_id=blog, title="T", body="v1"))["draft_id"]
    published = await alice.request("blog_publish", draft_id=draft)
    await alice.request("blog_edit", room_id=blog, txn_id=txn(), event_id=published["event_id"], body="v2")
    present = (await admin.request("present_add", name="Tea"))["present_id"]
    await bob.request("present_send", present_id=present, txn_id=txn(), service_id=svc, to_user=alice.user_id)
    state = {"svc": svc, "forum": forum, "wall": wall, "t1": t1["event_id"], "t2": t2["event_id"],
             "alice": alice.pseudonym, "bob": bob.pseudonym, "alice_id": alice.user_id}
    await close(alice, bob, mod, admin)
    return state


async def _check_after_restart(server, s):
    bob = await SharonClient.connect(server.ws_url)
    await bob.login(s["bob"], PASSWORD)
    assert (await bob.request("wall_open", service_id=s["svc"], user_id=s["alice_id"]))["room_id"] == s["wall"]
    timeline = (await bob.request("timeline"))["posts"]
    assert [p["type"] for p in timeline] == ["ps.present", "ps.post"]
    listed = (await bob.request("threads", room_id=s["forum"]))["threads"]
    assert [t["event_id"] for t in listed] == [s["t2"], s["t1"]]
    assert listed[1]["reactions"] == [{"key": "hug", "count": 1, "mine": True}]
    with pytest.raises(Exception) as exc:  # still locked after the restart (room state reloaded)
        await bob.request("thread_reply", room_id=s["forum"], txn_id=txn(), thread_id=s["t2"], body="r")
    assert "locked" in str(exc.value)
    feed = (await bob.request("blog_feed", service_id=s["svc"]))["posts"]
    assert feed[0]["content"]["body"] == "v2" and feed[0]["edited"]
    await bob.close()


def test_content_survives_a_restart(server, run):
    state = run(_everything(server))
    server.restart()
    run(_check_after_restart(server, state))


@pytest.mark.postgres
def test_content_on_postgresql(pg_server, run):
    state = run(_everything(pg_server), 60)
    pg_server.restart()
    run(_check_after_restart(pg_server, state))
