"""``sharon`` commands for staff (#5): moderate rooms, member cards, unmask, the audit log.

- ``sharon mod join ROOM [--visible]``, ``mod leave ROOM``, ``mod list``, ``mod card ROOM USER``
  (``--service`` instead of ROOM for a service-wide card);
- ``sharon unmask request SERVICE USER --reason-code CODE --reason TEXT``, ``unmask approve
  ID``, ``unmask refuse ID --reason TEXT``, ``unmask view ID``, ``unmask list SERVICE [--status]``;
- ``sharon audit [--actor --member --action --since --until --limit --before]`` (server admins);
- ``sharon notice ROOM``: the room's moderation notice.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any, Callable, Dict, Optional

from clients.cli import render
from clients.cli.main import authed, err, out, print_json, room_id_of

__all__ = ["register", "notice_of"]


async def notice_of(client: Any, room_id: str) -> Optional[str]:
    """The moderation notice of one of the caller's rooms (from ``rooms``), or None."""
    for summary in await client.rooms():
        if summary.get("room_id") == room_id and isinstance(summary.get("moderation_notice"), str):
            return summary["moderation_notice"]
    return None


def _ts(value: Optional[str]) -> Optional[int]:
    """An ISO date/time (UTC unless it says otherwise) or epoch milliseconds."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date/time or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def _show(args: argparse.Namespace, value: Dict[str, Any], line: str) -> None:
    if getattr(args, "json", False):
        print_json(value)
    else:
        out(line)


def _request_line(r: Dict[str, Any]) -> str:
    expires = f"  expires={render.format_time(r['expires_ts'])}" if r.get("expires_ts") else ""
    return (f"{r['request_id']}  {r['status']}  {render.clean(r.get('pseudonym'))} ({r['user_id']})  "
            f"{r['reason_code']}  by {render.clean(r.get('requester_pseudonym'))}{expires}")


async def cmd_mod(args: argparse.Namespace) -> int:
    """``sharon mod join|leave|list|card``."""
    client = await authed(args)
    try:
        if args.mod_action == "list":
            rooms = (await client.request("moderating"))["rooms"]
            for r in rooms:
                how = "visible" if r["visible"] else "observing"
                _show(args, r, f"{r['room_id']}  {render.clean(r.get('kind'))}  {render.clean(r.get('name'))}  {how}")
            return 0
        if args.mod_action == "card":
            fields: Dict[str, Any] = {"user_id": args.user}
            if args.service:
                fields["service_id"] = args.service
            else:
                fields["room_id"] = await room_id_of(client, args.room)
            card = await client.request("member_card", **fields)
            if args.json:
                print_json(card)
            else:
                for key in sorted(card):
                    out(f"{key}: {render.clean(card[key]) if isinstance(card[key], str) else card[key]}")
            return 0
        room = await room_id_of(client, args.room)
        if args.mod_action == "join":
            result = await client.request("moderate_join", room_id=room, visible=args.visible)
            if result.get("notice"):
                err(f"sharon: {render.clean(result['notice'])}")
            _show(args, result, f"{room}  {'joined as ' + result['role'] if args.visible else 'observing as ' + result['role']}")
        else:
            await client.request("moderate_leave", room_id=room)
            out(room)
        return 0
    finally:
        await client.close()


async def cmd_unmask(args: argparse.Namespace) -> int:
    """``sharon unmask request|approve|refuse|view|list``."""
    client = await authed(args)
    try:
        action = args.unmask_action
        if action == "request":
            r = await client.request("unmask_request", service_id=args.service, user_id=args.user,
                                     reason_code=args.reason_code, reason=args.reason)
            _show(args, r, _request_line(r))
        elif action in ("approve", "refuse"):
            fields: Dict[str, Any] = {"request_id": args.request_id}
            if action == "refuse":
                fields["reason"] = args.reason
            r = await client.request(f"unmask_{action}", **fields)
            _show(args, r, _request_line(r))
        elif action == "view":
            r = await client.request("unmask_view", request_id=args.request_id)
            if args.json:
                print_json(r)
            else:
                err(f"sharon: this view is recorded in the audit log; it expires {render.format_time(r['expires_ts'])}")
                for key, value in sorted(r["identity"].items()):
                    if isinstance(value, dict):
                        for sub, item in sorted(value.items()):
                            out(f"{key}.{sub}: {render.clean(item)}")
                    else:
                        out(f"{key}: {render.clean(value)}")
        else:
            fields = {"service_id": args.service}
            if args.status:
                fields["status"] = args.status
            for r in (await client.request("unmask_requests", **fields))["requests"]:
                _show(args, r, _request_line(r))
        return 0
    finally:
        await client.close()


async def cmd_audit(args: argparse.Namespace) -> int:
    """``sharon audit``: audit entries, newest first (server admins)."""
    client = await authed(args)
    try:
        fields: Dict[str, Any] = {"limit": args.limit}
        for name in ("actor", "member", "action", "before"):
            if getattr(args, name) is not None:
                fields[name] = getattr(args, name)
        if args.since is not None:
            fields["since_ts"] = args.since
        if args.until is not None:
            fields["until_ts"] = args.until
        result = await client.request("audit_query", **fields)
    finally:
        await client.close()
    for e in result["entries"]:
        member = f" member={e['member']}" if e.get("member") else ""
        _show(args, e, f"{e['seq']}  {render.format_time(e['ts'])}  {e['action']}  actor={e['actor']}{member}")
    if result.get("next") is not None and not args.json:
        err(f"sharon: more entries: --before {result['next']}")
    return 0


async def cmd_notice(args: argparse.Namespace) -> int:
    """``sharon notice ROOM``: the room's moderation notice (nothing if it has none)."""
    client = await authed(args)
    try:
        notice = await notice_of(client, await room_id_of(client, args.room))
    finally:
        await client.close()
    if notice:
        out(render.clean(notice))
    return 0


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the staff commands to the parser."""
    c = cmd("mod", "moderate rooms as staff: join (observe or visibly), leave, list, member cards")
    sub = c.add_subparsers(dest="mod_action", required=True, metavar="ACTION")
    j = sub.add_parser("join", help="observe a room (or join it visibly with --visible)")
    j.add_argument("room", help="room ID or name")
    j.add_argument("--visible", action="store_true", help="join as a member with a staff badge")
    j.add_argument("--json", action="store_true")
    lv = sub.add_parser("leave", help="stop moderating a room")
    lv.add_argument("room", help="room ID or name")
    ls = sub.add_parser("list", help="the rooms you moderate")
    ls.add_argument("--json", action="store_true")
    cd = sub.add_parser("card", help="a member's card (no identity)")
    cd.add_argument("room", nargs="?", help="room ID or name (or use --service)")
    cd.add_argument("user", help="user ID")
    cd.add_argument("--service", help="service ID instead of a room")
    cd.add_argument("--json", action="store_true")

    u = cmd("unmask", "request, approve, refuse, view or list unmask requests (audited)")
    sub = u.add_subparsers(dest="unmask_action", required=True, metavar="ACTION")
    rq = sub.add_parser("request", help="ask to see a member's real identity")
    rq.add_argument("service", help="service ID")
    rq.add_argument("user", help="user ID")
    rq.add_argument("--reason-code", required=True, help="a configured reason code, e.g. safeguarding")
    rq.add_argument("--reason", required=True, help="why, in a sentence")
    rq.add_argument("--json", action="store_true")
    for name in ("approve", "refuse", "view"):
        p = sub.add_parser(name, help=f"{name} an unmask request")
        p.add_argument("request_id")
        p.add_argument("--json", action="store_true")
        if name == "refuse":
            p.add_argument("--reason", required=True)
    lst = sub.add_parser("list", help="a service's unmask requests")
    lst.add_argument("service", help="service ID")
    lst.add_argument("--status", choices=("pending", "approved", "refused", "expired"))
    lst.add_argument("--json", action="store_true")

    a = cmd("audit", "read the audit log, newest first (server admins)")
    a.add_argument("--actor", help="user ID of who acted")
    a.add_argument("--member", help="user ID the entry is about")
    a.add_argument("--action", help="e.g. unmask.view")
    a.add_argument("--since", type=_ts, help="ISO date/time (UTC) or epoch ms, inclusive")
    a.add_argument("--until", type=_ts, help="ISO date/time (UTC) or epoch ms, exclusive")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--before", type=int, help="page back: entries before this seq")
    a.add_argument("--json", action="store_true", help="one JSON entry per line")

    n = cmd("notice", "show a room's moderation notice")
    n.add_argument("room", help="room ID or name")
    return {"mod": cmd_mod, "unmask": cmd_unmask, "audit": cmd_audit, "notice": cmd_notice}
