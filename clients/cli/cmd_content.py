"""``sharon`` commands for forums, walls and the timeline, blogs, reactions and presents.

Rooms may be given by ID or by the name of one of your rooms. Commands that send print the
new event ID; listings print one line per post (``--json``: one JSON object per line).
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any, Callable, Dict, List, Optional

from clients.cli import render
from clients.cli.main import authed, err, out, print_json, room_id_of, signpost_text

__all__ = ["register"]


def _txn() -> str:
    return "cli-" + secrets.token_urlsafe(12)


async def _call(args: argparse.Namespace, op: str, room: Optional[str] = None, *, live: bool = False,
                **fields: Any) -> Dict[str, Any]:
    """One request; ``room`` (an ID or one of your rooms' names) becomes ``room_id``. ``live``
    (posts): go live first and print the crisis signposting the server pushes for a risky post."""
    client = await authed(args)
    try:
        if room is not None:
            fields["room_id"] = await room_id_of(client, room)
        if live:
            await client.sync()
        result = await client.request(op, **{k: v for k, v in fields.items() if v is not None})
        for frame in client.take_frames() if live else ():
            if frame.get("op") == "signpost":
                err(signpost_text(frame))
        return result
    finally:
        await client.close()


def _posted(result: Dict[str, Any]) -> str:
    """The new event's ID, or, for a post held for review (#6), the held ID (notice on stderr)."""
    if result.get("held"):
        err(f"sharon: held for review: {render.clean(result.get('notice') or '')}")
        return result["held_id"]
    return result["event_id"]


def _counts(item: Dict[str, Any]) -> str:
    parts = []
    if "reply_count" in item:
        parts.append(f"replies={item['reply_count']}")
    if "comment_count" in item:
        parts.append(f"comments={item['comment_count']}")
    if item.get("present_count"):
        parts.append(f"presents={item['present_count']}")
    for r in item.get("reactions", []):
        parts.append(f"{render.clean(r['key'])}×{r['count']}")
    for flag in ("pinned", "locked", "edited"):
        if item.get(flag):
            parts.append(flag)
    return ("  [" + " ".join(parts) + "]") if parts else ""


def _line(item: Dict[str, Any]) -> str:
    c = item.get("content", {})
    who = render.clean(item.get("sender_pseudonym") or "someone")
    if item.get("type") == "ps.present":
        text = f"gave a present: {render.clean(c.get('name'))}"
        if c.get("message"):
            text += f" — {render.clean(c['message'])}"
    else:
        title = f"«{render.clean(c['title'])}» " if c.get("title") else ""
        text = title + render.clean(c.get("body"))
    return f"{item['event_id']} [{render.format_time(item.get('origin_server_ts'))}] {who}: {text}{_counts(item)}"


def _show(args: argparse.Namespace, items: List[Dict[str, Any]], nxt: Any = None) -> int:
    for item in items:
        print_json(item) if args.json else out(_line(item))
    if nxt is not None and not args.json:
        out(f"(more: --before {nxt})")
    return 0


# -- forums ------------------------------------------------------------------------------------
async def cmd_threads(args: argparse.Namespace) -> int:
    """``sharon forum-threads ROOM``: threads, pinned first, then by latest activity."""
    r = await _call(args, "threads", args.room, before=args.before, limit=args.limit)
    return _show(args, r["threads"], r["next"])


async def cmd_thread(args: argparse.Namespace) -> int:
    """``sharon forum-thread ROOM THREAD``: the first post and the replies."""
    r = await _call(args, "thread", args.room, thread_id=args.thread, limit=args.limit, **{"from": args.from_pos})
    _show(args, [r["thread"]] + r["replies"])
    if r["next"] is not None and not args.json:
        out(f"(more: --from {r['next']})")
    return 0


async def cmd_thread_new(args: argparse.Namespace) -> int:
    """``sharon forum-new ROOM TITLE BODY``: prints the thread ID."""
    out(_posted(await _call(args, "thread_create", args.room, live=True, txn_id=_txn(), title=args.title,
                            body=args.body)))
    return 0


async def cmd_reply(args: argparse.Namespace) -> int:
    """``sharon forum-reply ROOM THREAD BODY``."""
    out(_posted(await _call(args, "thread_reply", args.room, live=True, txn_id=_txn(), thread_id=args.thread,
                            body=args.body)))
    return 0


async def cmd_thread_state(args: argparse.Namespace) -> int:
    """``sharon forum-state ROOM THREAD --pin/--unpin --lock/--unlock`` (staff)."""
    r = await _call(args, "thread_state", args.room, thread_id=args.thread, pinned=args.pinned, locked=args.locked)
    out(f"pinned={str(r['pinned']).lower()} locked={str(r['locked']).lower()}")
    return 0


# -- walls -------------------------------------------------------------------------------------
def _wall_fields(args: argparse.Namespace) -> Dict[str, Any]:
    return {"service_id": args.service, "user_id": args.user, "service_wall": True if args.service_wall else None}


async def cmd_wall(args: argparse.Namespace) -> int:
    """``sharon wall SERVICE [--user U | --service-wall]``: open a wall and list its posts."""
    client = await authed(args)
    try:
        room_id = (await client.request("wall_open", **{k: v for k, v in _wall_fields(args).items()
                                                        if v is not None}))["room_id"]
        paging = {"before": args.before} if args.before is not None else {}
        r = await client.request("wall", room_id=room_id, limit=args.limit, **paging)
    finally:
        await client.close()
    if not args.json:
        out(f"wall {room_id}")
    return _show(args, r["posts"], r["next"])


async def cmd_wall_post(args: argparse.Namespace) -> int:
    """``sharon wall-post SERVICE BODY [--user U | --service-wall]``: prints the post ID."""
    client = await authed(args)
    try:
        room_id = (await client.request("wall_open", **{k: v for k, v in _wall_fields(args).items()
                                                        if v is not None}))["room_id"]
        await client.sync()  # live: signposting for a risky post
        posted = await client.request("wall_post", room_id=room_id, txn_id=_txn(), body=args.body)
        for frame in client.take_frames():
            if frame.get("op") == "signpost":
                err(signpost_text(frame))
        out(_posted(posted))
    finally:
        await client.close()
    return 0


async def cmd_comment(args: argparse.Namespace) -> int:
    """``sharon comment ROOM POST BODY``: comment on a wall or blog post."""
    out(_posted(await _call(args, "comment", args.room, live=True, txn_id=_txn(), post_id=args.post,
                            body=args.body)))
    return 0


async def cmd_comments(args: argparse.Namespace) -> int:
    """``sharon comments ROOM POST``."""
    r = await _call(args, "comments", args.room, post_id=args.post, limit=args.limit)
    return _show(args, r["comments"])


async def cmd_timeline(args: argparse.Namespace) -> int:
    """``sharon timeline [--service S]``: your wall, followed walls and service walls."""
    r = await _call(args, "timeline", service_id=args.service, before=args.before, limit=args.limit)
    return _show(args, r["posts"], r["next"])


async def cmd_follow(args: argparse.Namespace) -> int:
    """``sharon wall-follow SERVICE USER`` / ``wall-unfollow``."""
    await _call(args, "unfollow" if args.undo else "follow", service_id=args.service, user_id=args.user)
    return 0


async def cmd_following(args: argparse.Namespace) -> int:
    """``sharon wall-following [--service S]``."""
    for f in (await _call(args, "following", service_id=args.service))["following"]:
        out(f"{f['service_id']}  {f['user_id']}  {render.clean(f['pseudonym'])}")
    return 0


# -- blogs -------------------------------------------------------------------------------------
async def cmd_draft(args: argparse.Namespace) -> int:
    """``sharon blog-draft TITLE BODY [--draft ID] [--room BLOG]``: prints the draft ID."""
    out((await _call(args, "blog_draft_save", args.room, draft_id=args.draft, title=args.title,
                     body=args.body))["draft_id"])
    return 0


async def cmd_drafts(args: argparse.Namespace) -> int:
    """``sharon blog-drafts``: your unpublished drafts."""
    for d in (await _call(args, "blog_drafts"))["drafts"]:
        print_json(d) if args.json else out(f"{d['draft_id']}  {d['room_id'] or '-'}  «{render.clean(d['title'])}»")
    return 0


async def cmd_publish(args: argparse.Namespace) -> int:
    """``sharon blog-publish DRAFT [--room BLOG]``: prints the post ID."""
    out(_posted(await _call(args, "blog_publish", args.room, live=True, draft_id=args.draft)))
    return 0


async def cmd_edit(args: argparse.Namespace) -> int:
    """``sharon blog-edit ROOM POST BODY [--title T]``: edit your post; prints the edit's ID."""
    out(_posted(await _call(args, "blog_edit", args.room, live=True, txn_id=_txn(), event_id=args.post,
                            title=args.title, body=args.body)))
    return 0


async def cmd_versions(args: argparse.Namespace) -> int:
    """``sharon blog-versions ROOM POST``: the original and every edit."""
    return _show(args, (await _call(args, "edits", args.room, event_id=args.post))["versions"])


async def cmd_feed(args: argparse.Namespace) -> int:
    """``sharon blog-feed SERVICE``: the service's blog posts, newest first."""
    r = await _call(args, "blog_feed", service_id=args.service, before=args.before, limit=args.limit)
    return _show(args, r["posts"], r["next"])


# -- reactions and presents --------------------------------------------------------------------
async def cmd_react(args: argparse.Namespace) -> int:
    """``sharon react ROOM EVENT KEY [--remove]``."""
    out((await _call(args, "unreact" if args.remove else "react", args.room, txn_id=_txn(), target=args.event,
                     key=args.key))["event_id"])
    return 0


async def cmd_presents(args: argparse.Namespace) -> int:
    """``sharon presents [--service S]``: the catalogue."""
    for p in (await _call(args, "presents", service_id=args.service))["presents"]:
        out(f"{p['present_id']}  {render.clean(p['name'])}  {p['picture_media'] or '-'}  {p['service_id'] or 'all'}")
    return 0


async def cmd_present_add(args: argparse.Namespace) -> int:
    """``sharon present-add NAME [--picture MEDIA] [--service S]`` (admins): prints the ID."""
    out((await _call(args, "present_add", name=args.name, picture_media=args.picture,
                     service_id=args.service))["present_id"])
    return 0


async def cmd_present_remove(args: argparse.Namespace) -> int:
    """``sharon present-remove ID`` (admins)."""
    await _call(args, "present_remove", present_id=args.present)
    return 0


async def cmd_present_send(args: argparse.Namespace) -> int:
    """``sharon present-send ID (--service S --to USER | --room R --post P) [--message M]``."""
    out((await _call(args, "present_send", args.room, present_id=args.present, txn_id=_txn(), service_id=args.service,
                     to_user=args.to, post_id=args.post, message=args.message))["event_id"])
    return 0


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the content commands to the parser."""
    def page(c: argparse.ArgumentParser, before: bool = True) -> None:
        if before:
            c.add_argument("--before", type=int, help="stream position to page back from")
        c.add_argument("--limit", type=int, default=20)
        c.add_argument("--json", action="store_true", help="one JSON object per line")

    c = cmd("forum-threads", "list a forum's threads (pinned first, then latest activity)")
    c.add_argument("room"); page(c)
    c = cmd("forum-thread", "open a thread: its first post and replies")
    c.add_argument("room"); c.add_argument("thread"); c.add_argument("--from", dest="from_pos", type=int); page(c, False)
    c = cmd("forum-new", "start a thread; prints its ID")
    c.add_argument("room"); c.add_argument("title"); c.add_argument("body")
    c = cmd("forum-reply", "reply to a thread")
    c.add_argument("room"); c.add_argument("thread"); c.add_argument("body")
    c = cmd("forum-state", "pin/unpin, lock/unlock a thread (staff)")
    c.add_argument("room"); c.add_argument("thread")
    c.add_argument("--pin", dest="pinned", action="store_const", const=True)
    c.add_argument("--unpin", dest="pinned", action="store_const", const=False)
    c.add_argument("--lock", dest="locked", action="store_const", const=True)
    c.add_argument("--unlock", dest="locked", action="store_const", const=False)
    for name, help in (("wall", "open a wall (yours by default) and list its posts"),
                       ("wall-post", "post on a wall (yours by default); prints the post ID")):
        c = cmd(name, help)
        c.add_argument("service")
        if name == "wall-post":
            c.add_argument("body")
        who = c.add_mutually_exclusive_group()
        who.add_argument("--user", help="whose wall (user ID)")
        who.add_argument("--service-wall", action="store_true", help="the service's own wall")
        if name == "wall":
            page(c)
    c = cmd("comment", "comment on a wall or blog post")
    c.add_argument("room"); c.add_argument("post"); c.add_argument("body")
    c = cmd("comments", "list a post's comments")
    c.add_argument("room"); c.add_argument("post"); page(c, False)
    c = cmd("timeline", "posts from your wall, the walls you follow and service walls")
    c.add_argument("--service"); page(c)
    for name, undo in (("wall-follow", False), ("wall-unfollow", True)):
        c = cmd(name, ("stop following" if undo else "follow") + " a member's wall in a service")
        c.add_argument("service"); c.add_argument("user"); c.set_defaults(undo=undo)
    c = cmd("wall-following", "whose walls you follow")
    c.add_argument("--service")
    c = cmd("blog-draft", "save a private draft; prints its ID")
    c.add_argument("title"); c.add_argument("body"); c.add_argument("--draft"); c.add_argument("--room")
    c = cmd("blog-drafts", "your unpublished drafts")
    c.add_argument("--json", action="store_true")
    c = cmd("blog-publish", "publish a draft; prints the post ID")
    c.add_argument("draft"); c.add_argument("--room")
    c = cmd("blog-edit", "edit your post (keeps history)")
    c.add_argument("room"); c.add_argument("post"); c.add_argument("body"); c.add_argument("--title")
    c = cmd("blog-versions", "a post's original and edits")
    c.add_argument("room"); c.add_argument("post"); c.add_argument("--json", action="store_true")
    c = cmd("blog-feed", "a service's blog posts")
    c.add_argument("service"); page(c)
    c = cmd("react", "react to a post or message (--remove to take it back)")
    c.add_argument("room"); c.add_argument("event"); c.add_argument("key"); c.add_argument("--remove", action="store_true")
    c = cmd("presents", "the presents catalogue")
    c.add_argument("--service")
    c = cmd("present-add", "add a present to the catalogue (admins); prints its ID")
    c.add_argument("name"); c.add_argument("--picture"); c.add_argument("--service")
    c = cmd("present-remove", "withdraw a present (admins)")
    c.add_argument("present")
    c = cmd("present-send", "give a present to a member (--service --to) or attach it to a post (--room --post)")
    c.add_argument("present"); c.add_argument("--service"); c.add_argument("--to")
    c.add_argument("--room"); c.add_argument("--post"); c.add_argument("--message")
    return {"forum-threads": cmd_threads, "forum-thread": cmd_thread, "forum-new": cmd_thread_new,
            "forum-reply": cmd_reply, "forum-state": cmd_thread_state, "wall": cmd_wall, "wall-post": cmd_wall_post,
            "comment": cmd_comment, "comments": cmd_comments, "timeline": cmd_timeline,
            "wall-follow": cmd_follow, "wall-unfollow": cmd_follow, "wall-following": cmd_following,
            "blog-draft": cmd_draft, "blog-drafts": cmd_drafts, "blog-publish": cmd_publish,
            "blog-edit": cmd_edit, "blog-versions": cmd_versions, "blog-feed": cmd_feed,
            "react": cmd_react, "presents": cmd_presents, "present-add": cmd_present_add,
            "present-remove": cmd_present_remove, "present-send": cmd_present_send}
