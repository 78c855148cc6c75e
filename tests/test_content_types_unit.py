"""Content event types in isolation: what they notify, how they normalise, what they refuse."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace as NS

import pytest

from protocol.errors import BadField, Forbidden, TooLarge
from sharon_server.event_types import SendContext
from sharon_server.features.content_types import ContentCore, event_types

ROOM, SVC = "!" + "R" * 43, "!" + "S" * 43
THREAD, POST = "$" + "T" * 43, "$" + "P" * 43
ALICE, BOB, CAROL = "@alice:x", "@bob:x", "@carol:x"


class _Store:
    def __init__(self, items):
        self.items = items

    async def item(self, event_id):
        return self.items.get(event_id)

    async def event_meta(self, event_id):
        return NS(room_id=ROOM, type="m.room.message", state_key=None, sender=ALICE)

    async def has_reaction(self, *a):
        return False

    async def present(self, present_id):
        return NS(removed=False, service_id=None, name="Tea", picture_media=None)


class _State:
    creator = ALICE

    def __init__(self, flags=None):
        self.flags = flags or {}

    def get(self, etype, key=""):
        return {"content": self.flags[key]} if key in self.flags else None


def _core(items, wall=None):
    rooms = NS(body_limit=lambda room_id, kind: 10, kinds={}, rooms={})
    services = NS(service_of=lambda r: SVC, is_staff=lambda s, u: u == CAROL, is_admin=lambda u: False)
    core = ContentCore(rooms, services, _Store(items))
    if wall is not None:
        core.index_wall(ROOM, SVC, wall)
    return {t.etype: t for t in event_types(core)}


def _ctx(etype, content, sender=BOB, kind="forum", state=None, state_key=None):
    return SendContext(session=NS(user_id=sender), room_id=ROOM, kind=kind, state=state or _State(), etype=etype,
                       content=content, state_key=state_key)


def _prepare(etype_obj, ctx):
    result = etype_obj.prepare(ctx)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return ctx


def _item(event_id, type_, author, wall_owner=None):
    return NS(event_id=event_id, room_id=ROOM, type=type_, author=author, wall_owner=wall_owner, current_id=event_id)


def test_reply_notifies_the_thread_author_but_not_oneself():
    types = _core({THREAD: _item(THREAD, "ps.thread", ALICE)})
    ctx = _prepare(types["ps.reply"], _ctx("ps.reply", {"thread_id": THREAD, "body": "hi", "extra": 1}))
    assert ctx.scratch["notify"] == [(ALICE, "reply")]
    assert ctx.content == {"thread_id": THREAD, "body": "hi"}  # unknown keys are dropped
    own = _prepare(types["ps.reply"], _ctx("ps.reply", {"thread_id": THREAD, "body": "hi"}, sender=ALICE))
    assert own.scratch.get("notify", []) == []


def test_locked_thread_and_limits():
    types = _core({THREAD: _item(THREAD, "ps.thread", ALICE)})
    with pytest.raises(Forbidden):
        _prepare(types["ps.reply"], _ctx("ps.reply", {"thread_id": THREAD, "body": "hi"},
                                         state=_State({THREAD: {"locked": True}})))
    with pytest.raises(TooLarge) as exc:
        _prepare(types["ps.thread"], _ctx("ps.thread", {"title": "t", "body": "x" * 11}))
    assert exc.value.field == "body" and "10" in exc.value.reason
    with pytest.raises(BadField):
        _prepare(types["ps.thread"], _ctx("ps.thread", {"title": "   ", "body": "x"}))


def test_comment_notifies_post_author_and_wall_owner_once_each():
    types = _core({POST: _item(POST, "ps.post", BOB, wall_owner=ALICE)}, wall=ALICE)
    ctx = _prepare(types["ps.comment"], _ctx("ps.comment", {"post_id": POST, "body": "x"}, sender=CAROL,
                                             kind="wall"))
    assert ctx.scratch["notify"] == [(BOB, "comment"), (ALICE, "comment")]


def test_wall_post_notifies_owner_and_service_wall_needs_staff():
    types = _core({}, wall=ALICE)
    ctx = _prepare(types["ps.post"], _ctx("ps.post", {"body": "x"}, kind="wall"))
    assert ctx.scratch["notify"] == [(ALICE, "wall_post")]
    service_wall = _core({}, wall="")
    with pytest.raises(Forbidden):
        _prepare(service_wall["ps.post"], _ctx("ps.post", {"body": "x"}, kind="wall"))
    _prepare(service_wall["ps.post"], _ctx("ps.post", {"body": "x"}, kind="wall", sender=CAROL))


def test_present_notifies_recipient_and_reaction_the_sender():
    types = _core({}, wall=ALICE)
    ctx = _prepare(types["ps.present"], _ctx("ps.present", {"present_id": "p1", "to_user": ALICE}, kind="wall"))
    assert ctx.scratch["notify"] == [(ALICE, "present")] and ctx.content["name"] == "Tea"
    assert ctx.scratch["text"] == []
    ctx = _prepare(types["ps.reaction"], _ctx("ps.reaction", {"target": POST, "key": "heart"}, kind="chat"))
    assert ctx.scratch["notify"] == [(ALICE, "reaction")]


def test_thread_state_is_staff_only_and_merges():
    types = _core({THREAD: _item(THREAD, "ps.thread", ALICE)})
    with pytest.raises(Forbidden):
        _prepare(types["ps.thread.state"], _ctx("ps.thread.state", {"pinned": True}, sender=ALICE,
                                                state_key=THREAD))
    ctx = _prepare(types["ps.thread.state"], _ctx("ps.thread.state", {"locked": True}, sender=CAROL,
                                                  state_key=THREAD, state=_State({THREAD: {"pinned": True,
                                                                                           "locked": False}})))
    assert ctx.content == {"pinned": True, "locked": True}
