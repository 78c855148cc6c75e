"""Blogs: private drafts until published, author-only posts and edits with history, the feed."""

from __future__ import annotations

import pytest

from protocol.errors import BadField, Forbidden, NotFound, NotInRoom, TooLarge
from tests.helpers import user
from tests.test_content_support import close, room_in, service, txn

pytestmark = pytest.mark.integration


def test_drafts_are_private_until_published_and_publish_is_idempotent(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        blog = await room_in(alice, svc, "blog", bob, name="Alice writes")
        saved = await alice.request("blog_draft_save", title="", body="thinking...")
        draft = saved["draft_id"]
        assert saved["room_id"] is None
        await alice.request("blog_draft_save", draft_id=draft, room_id=blog, title="Recovery", body="Day one")
        drafts = (await alice.request("blog_drafts"))["drafts"]
        assert [(d["draft_id"], d["title"], d["body"], d["room_id"]) for d in drafts] == \
            [(draft, "Recovery", "Day one", blog)]
        assert (await bob.request("blog_drafts"))["drafts"] == []
        for op, fields in (("blog_publish", {}), ("blog_draft_delete", {}),
                           ("blog_draft_save", {"title": "mine", "body": "now"})):
            with pytest.raises(NotFound):
                await bob.request(op, draft_id=draft, **fields)
        assert (await bob.request("blog_feed", service_id=svc))["posts"] == []
        assert [e for e in (await bob.history(blog))["events"] if e["type"] == "ps.blog.post"] == []
        published = await alice.request("blog_publish", draft_id=draft)
        again = await alice.request("blog_publish", draft_id=draft)
        assert again["event_id"] == published["event_id"] and again["duplicate"] is True
        assert (await alice.request("blog_drafts"))["drafts"] == []
        feed = (await bob.request("blog_feed", service_id=svc))["posts"]
        assert [(p["event_id"], p["content"]["title"]) for p in feed] == [(published["event_id"], "Recovery")]
        with pytest.raises(NotFound):  # published drafts are no longer editable as drafts
            await alice.request("blog_draft_save", draft_id=draft, title="x", body="y")
        empty = (await alice.request("blog_draft_save", room_id=blog, title="", body="x"))["draft_id"]
        with pytest.raises(BadField) as exc:
            await alice.request("blog_publish", draft_id=empty)
        assert exc.value.field == "title"
        loose = (await alice.request("blog_draft_save", title="t", body="x"))["draft_id"]
        with pytest.raises(BadField) as exc:
            await alice.request("blog_publish", draft_id=loose)
        assert exc.value.field == "room_id"
        await alice.request("blog_draft_delete", draft_id=loose)
        assert [d["draft_id"] for d in (await alice.request("blog_drafts"))["drafts"]] == [empty]
        await close(alice, bob, admin)

    run(scenario())


def test_only_the_author_posts_and_edits_and_edits_keep_history(server, run):
    async def scenario():
        alice, bob = await user(server, "alice"), await user(server, "bob")
        admin, svc = await service(server, members=(alice, bob))
        blog = await room_in(alice, svc, "blog", bob)
        with pytest.raises(Forbidden):  # bob does not own alice's blog
            await bob.request("blog_draft_save", room_id=blog, title="t", body="b")
        bobs = (await bob.request("blog_draft_save", title="t", body="b"))["draft_id"]
        with pytest.raises(Forbidden):
            await bob.request("blog_publish", draft_id=bobs, room_id=blog)
        draft = (await alice.request("blog_draft_save", room_id=blog, title="Week 1", body="v1"))["draft_id"]
        post = await alice.request("blog_publish", draft_id=draft)
        edit1 = await alice.request("blog_edit", room_id=blog, txn_id=txn(), event_id=post["event_id"], body="v2")
        await alice.request("blog_edit", room_id=blog, txn_id=txn(), event_id=post["event_id"],
                            title="Week one", body="v3")
        with pytest.raises(Forbidden):
            await bob.request("blog_edit", room_id=blog, txn_id=txn(), event_id=post["event_id"], body="hacked")
        comment = await bob.request("comment", room_id=blog, txn_id=txn(), post_id=post["event_id"], body="Brave")
        with pytest.raises(BadField):  # comments are not posts and cannot be edited
            await bob.request("blog_edit", room_id=blog, txn_id=txn(), event_id=comment["event_id"], body="x")
        versions = (await bob.request("edits", room_id=blog, event_id=post["event_id"]))["versions"]
        assert [(v["content"].get("title"), v["content"]["body"]) for v in versions] == \
            [("Week 1", "v1"), ("Week 1", "v2"), ("Week one", "v3")]
        assert versions[1]["event_id"] == edit1["event_id"]
        feed = (await bob.request("blog_feed", service_id=svc))["posts"][0]
        assert feed["content"] == {"title": "Week one", "body": "v3"} and feed["edited"] is True
        assert feed["comment_count"] == 1
        with pytest.raises(Forbidden):  # members comment; they do not post in others' blogs
            await bob.request("blog_edit", room_id=blog, txn_id=txn(), event_id=post["event_id"], body="x")
        await close(alice, bob, admin)

    run(scenario())


def test_blog_feed_is_per_service_and_respects_private_blogs(server, run):
    async def scenario():
        alice, bob, eve = await user(server, "alice"), await user(server, "bob"), await user(server, "eve")
        admin, svc = await service(server, members=(alice, bob), settings={"char_limits": {"blog": 30}})
        admin2, other = await service(server, members=(eve,), name="Carers")
        public = await room_in(alice, svc, "blog", name="Open")
        private = await room_in(alice, svc, "blog", name="Diary", public=False)
        with pytest.raises(TooLarge) as exc:
            await alice.request("blog_draft_save", room_id=public, title="t", body="x" * 31)
        assert exc.value.field == "body" and "30" in exc.value.reason
        p1 = await alice.request("blog_publish", draft_id=(await alice.request(
            "blog_draft_save", room_id=public, title="Open post", body="hello"))["draft_id"])
        p2 = await alice.request("blog_publish", draft_id=(await alice.request(
            "blog_draft_save", room_id=private, title="Diary", body="secret"))["draft_id"])
        assert [p["event_id"] for p in (await alice.request("blog_feed", service_id=svc))["posts"]] == \
            [p2["event_id"], p1["event_id"]]
        assert [p["event_id"] for p in (await bob.request("blog_feed", service_id=svc))["posts"]] == [p1["event_id"]]
        with pytest.raises(Forbidden):
            await eve.request("blog_feed", service_id=svc)
        with pytest.raises(Forbidden):
            await eve.join(public)
        with pytest.raises(NotInRoom):
            await eve.request("comment", room_id=public, txn_id=txn(), post_id=p1["event_id"], body="hi")
        assert (await eve.request("blog_feed", service_id=other))["posts"] == []
        await close(alice, bob, eve, admin, admin2)

    run(scenario())
