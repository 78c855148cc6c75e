"""``sharon`` commands for notifications, search, hashtags and trending."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Optional

from clients.cli import render
from clients.cli.main import authed, out, print_json, room_id_of

__all__ = ["register"]


async def _call(args: argparse.Namespace, op: str, **fields: Any) -> Dict[str, Any]:
    client = await authed(args)
    try:
        if fields.get("room_id") is not None:
            fields["room_id"] = await room_id_of(client, fields["room_id"])
        return await client.request(op, **{k: v for k, v in fields.items() if v is not None})
    finally:
        await client.close()


def _event_line(event: Dict[str, Any]) -> str:
    who = render.clean(event.get("sender_pseudonym") or event.get("sender") or "?")
    body = render.clean((event.get("content") or {}).get("body", ""))
    return f"{event.get('pos')}  {event.get('room_id')}  {who}: {body}"


async def cmd_notifications(args: argparse.Namespace) -> int:
    """``sharon notifications [--unread] [--limit N]``: newest first; the unread count last."""
    result = await _call(args, "notifications", limit=args.limit, unread_only=args.unread or None)
    for n in result["notifications"]:
        if args.json:
            print_json(n)
        else:
            mark = " " if n["read"] else "*"
            notice = n.get("notice")
            if notice is not None:  # from the service (a sanction, a decision, an outcome)
                words = notice.get("notice") or notice.get("message") or (notice.get("sanction") or {}).get("notice")
                out(f"{mark} {n['pos']}  {render.format_time(n['ts'])}  {n['reason']:<8} "
                    f"{render.clean(str(words or ''))}")
                continue
            out(f"{mark} {n['pos']}  {render.format_time(n['ts'])}  {n['reason']:<8} "
                f"{render.clean(n['actor_pseudonym'])}  {n['room_id']}  {n['event_id']}")
    if not args.json:
        out(f"unread: {result['unread']}")
    return 0


async def cmd_mark_read(args: argparse.Namespace) -> int:
    """``sharon mark-read-notifications [--upto POS]``: prints the unread count left."""
    out(f"unread: {(await _call(args, 'notifications_read', upto=args.upto))['unread']}")
    return 0


async def cmd_search(args: argparse.Namespace) -> int:
    """``sharon search QUERY [--room R] [--service S]``: matching events you can see, newest first."""
    result = await _call(args, "search", query=args.query, room_id=args.room, service_id=args.service,
                         limit=args.limit)
    for hit in result["results"]:
        print_json(hit) if args.json else out(_event_line(hit["event"]))
    return 0


async def cmd_tags(args: argparse.Namespace) -> int:
    """``sharon tags SERVICE TAG``: posts with #TAG in the service, newest first."""
    result = await _call(args, "tag_posts", service_id=args.service, tag=args.tag, limit=args.limit)
    for event in result["events"]:
        print_json(event) if args.json else out(_event_line(event))
    return 0


def _counts(items: List[Dict[str, Any]], json_out: bool) -> None:
    for item in items:
        print_json(item) if json_out else out(f"#{render.clean(item['tag'])}  {item['count']}")


async def cmd_trending(args: argparse.Namespace) -> int:
    """``sharon trending SERVICE``: the service's approved trending tags with their counts."""
    result = await _call(args, "trending", service_id=args.service)
    if not result["enabled"] and not args.json:
        out("trending is switched off in this service")
    _counts(result["tags"], args.json)
    return 0


async def cmd_tag_candidates(args: argparse.Namespace) -> int:
    """``sharon tag-candidates SERVICE``: tags in use that staff have not approved (staff only)."""
    _counts((await _call(args, "tag_candidates", service_id=args.service))["candidates"], args.json)
    return 0


async def cmd_approve_tag(args: argparse.Namespace) -> int:
    """``sharon approve-tag SERVICE TAG``: let a tag trend (staff only); prints the tag."""
    out("#" + (await _call(args, "tag_approve", service_id=args.service, tag=args.tag))["tag"])
    return 0


async def cmd_revoke_tag(args: argparse.Namespace) -> int:
    """``sharon revoke-tag SERVICE TAG``: stop a tag trending (staff only)."""
    result = await _call(args, "tag_revoke", service_id=args.service, tag=args.tag)
    out(("#" + result["tag"]) if result["revoked"] else f"#{result['tag']} was not approved")
    return 0


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("limit must be 1..100")
    return value


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the social commands to the parser."""
    def with_json(c: argparse.ArgumentParser, limit: Optional[int] = None) -> argparse.ArgumentParser:
        c.add_argument("--json", action="store_true", help="one JSON object per line")
        if limit is not None:
            c.add_argument("--limit", type=_limit, default=limit, help=f"at most this many (1..100, default {limit})")
        return c

    c = with_json(cmd("notifications", "your notifications, newest first, and the unread count"), 20)
    c.add_argument("--unread", action="store_true", help="only unread ones")
    c = cmd("mark-read-notifications", "mark your notifications read")
    c.add_argument("--upto", type=int, help="only up to this notification position")
    c = with_json(cmd("search", "full-text search over the rooms you are in"), 20)
    c.add_argument("query")
    c.add_argument("--room", help="room ID, or the name of one of your rooms")
    c.add_argument("--service", help="only rooms of this service")
    c = with_json(cmd("tags", "posts with a hashtag in a service"), 20)
    c.add_argument("service")
    c.add_argument("tag")
    c = with_json(cmd("trending", "a service's trending (approved) tags"))
    c.add_argument("service")
    c = with_json(cmd("tag-candidates", "tags waiting for approval (staff)"))
    c.add_argument("service")
    c = cmd("approve-tag", "let a tag trend in a service (staff)")
    c.add_argument("service")
    c.add_argument("tag")
    c = cmd("revoke-tag", "stop a tag trending in a service (staff)")
    c.add_argument("service")
    c.add_argument("tag")
    return {"revoke-tag": cmd_revoke_tag, "notifications": cmd_notifications, "mark-read-notifications": cmd_mark_read, "search": cmd_search,
            "tags": cmd_tags, "trending": cmd_trending, "tag-candidates": cmd_tag_candidates,
            "approve-tag": cmd_approve_tag}
