"""``sharon`` commands for DMs, read markers, unread counts and character limits."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict

from clients.cli import render
from clients.cli.main import authed, out, print_json, room_id_of

__all__ = ["register"]


async def cmd_dm(args: argparse.Namespace) -> int:
    """``sharon dm USER [--service S]``: open (or reuse) a DM; prints its room ID."""
    client = await authed(args)
    try:
        fields: Dict[str, Any] = {"user_id": args.user}
        if args.service:
            fields["service_id"] = args.service
        result = await client.request("create_dm", **fields)
    finally:
        await client.close()
    out(result["room_id"])
    return 0


async def cmd_read(args: argparse.Namespace) -> int:
    """``sharon read ROOM``: mark everything in the room read; prints the marker position."""
    client = await authed(args)
    try:
        result = await client.request("mark_read", room_id=await room_id_of(client, args.room))
    finally:
        await client.close()
    out(str(result["pos"]))
    return 0


async def cmd_unread(args: argparse.Namespace) -> int:
    """``sharon unread``: your joined rooms with unread messages (``--all``: every room)."""
    client = await authed(args)
    try:
        rooms = await client.rooms()
    finally:
        await client.close()
    for r in rooms:
        count = r.get("unread", 0)
        if r.get("membership") != "join" or (count == 0 and not args.all):
            continue
        if args.json:
            print_json({"room_id": r["room_id"], "unread": count})
            continue
        name = r.get("dm_pseudonym") or r.get("name") or ""
        shown = f"{count}+" if count >= 99 else str(count)
        out(f"{r['room_id']}  {render.clean(r.get('kind'))}  {render.clean(name)}  unread={shown}")
    return 0


async def cmd_limits(args: argparse.Namespace) -> int:
    """``sharon limits [ROOM]``: the character limits of a room, or the server's defaults."""
    client = await authed(args)
    try:
        fields: Dict[str, Any] = {}
        if args.room:
            fields["room_id"] = await room_id_of(client, args.room)
        result = await client.request("limits", **fields)
    finally:
        await client.close()
    if args.json:
        print_json(result)
        return 0
    out(f"max_body_chars={result['max_body_chars']}")
    for kind, limit in sorted(result["char_limits"].items()):
        out(f"{kind}={limit}")
    return 0


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the DM and read-state commands to the parser."""
    c = cmd("dm", "open a direct message with a user; prints the room ID")
    c.add_argument("user", help="user ID (@localpart:server)")
    c.add_argument("--service", help="the service the DM belongs to (default: one you share)")
    c = cmd("read", "mark everything in a room read")
    c.add_argument("room", help="room ID or name")
    c = cmd("unread", "list rooms with unread messages")
    c.add_argument("--all", action="store_true", help="also rooms with nothing unread")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c = cmd("limits", "show the character limits of a room (or the server's defaults)")
    c.add_argument("room", nargs="?", help="room ID or name")
    c.add_argument("--json", action="store_true", help="one JSON object")
    return {"dm": cmd_dm, "read": cmd_read, "unread": cmd_unread, "limits": cmd_limits}
