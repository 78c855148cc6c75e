"""``sharon`` commands for reports, the triage queue, duty and the rota (#6).

Members: ``sharon report`` and ``sharon my-reports``. Staff: ``sharon duty on|off``,
``sharon rota``, and ``sharon queue``: a live view with countdowns that redraws every
second and refetches at once when an alert arrives (``--once`` prints it once), plus
``sharon queue claim|release|resolve|escalate|scan``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from clients.cli import render
from clients.cli.main import authed, call, err, out, print_json, room_id_of

__all__ = ["register", "format_countdown", "queue_lines"]

CATEGORIES = ("risk_to_self", "risk_to_others", "abuse", "identifying", "spam", "other")
OUTCOMES = ("action_taken", "no_action", "member_supported", "referred", "duplicate", "answered")
REFRESH_S = 1.0
REFETCH_S = 15.0
LIVE_OPS = ("alert", "escalation", "unanswered_offer")


def format_countdown(ms: int) -> str:
    """``12m05s`` left, or ``OVERDUE 3m`` once past the target."""
    late = ms <= 0
    secs = abs(ms) // 1000
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
    return f"OVERDUE {text}" if late else text


def queue_lines(items: List[Dict[str, Any]], skew_ms: int = 0) -> List[str]:
    """One line per item, in the server's order, with countdowns at local time + ``skew_ms``."""
    now = int(time.time() * 1000) + skew_ms
    lines = []
    for n, i in enumerate(items, 1):
        flags = "!" if i.get("high_risk") else " "
        who = render.clean(i.get("claimed_by_pseudonym")) if i.get("claimed_by") else "-"
        extra = []
        if i.get("report_count"):
            extra.append(f"reports={i['report_count']}")
        if i.get("hidden"):
            extra.append("hidden")
        if i.get("escalated"):
            extra.append("escalated")
        subject = render.clean(i.get("subject_pseudonym")) if i.get("subject_user") else ""
        lines.append(f"{n:>3}{flags} {i['category']:<14} {i['risk_score']:>4}  "
                     f"{format_countdown(i['due_ts'] - now):>14}  {i['status']:<7} {who:<16} "
                     f"{','.join(i['kinds']):<16} {subject:<16} {render.clean(i.get('summary'))[:60]}  "
                     f"{' '.join(extra)}  {i['item_id']}")
    return lines


async def cmd_report(args: argparse.Namespace) -> int:
    """``sharon report ROOM [EVENT] [--user U] --category C [--note N]``: prints the report ID."""
    client = await authed(args)
    try:
        fields: Dict[str, Any] = {"room_id": await room_id_of(client, args.room), "category": args.category}
        if args.event:
            fields["event_id"] = args.event
        if args.user:
            fields["user_id"] = args.user
        if args.note:
            fields["note"] = args.note
        result = await client.request("report", **fields)
    finally:
        await client.close()
    out(result["report_id"])
    err("sharon: thank you. The moderators will look at it; the person you reported is not told who you are.")
    return 0


async def cmd_my_reports(args: argparse.Namespace) -> int:
    """``sharon my-reports``: your reports and how they ended."""
    reports = (await call(args, "my_reports"))["reports"]
    for r in reports:
        if args.json:
            print_json(r)
        else:
            outcome = f"  {r['message']}" if r.get("message") else ""
            out(f"{r['report_id']}  {render.format_time(r['created_ts'])}  {r['category']}  {r['status']}{outcome}")
    return 0


async def cmd_duty(args: argparse.Namespace) -> int:
    """``sharon duty on|off SERVICE``: prints who is on duty now."""
    result = await call(args, "duty", service_id=args.service, on=args.state == "on")
    if args.json:
        print_json(result)
        return 0
    out(f"you are {'on' if result['on'] else 'off'} duty for {result['service_id']}")
    for u in result["on_duty"]:
        out(f"on duty: {render.clean(u['pseudonym'])} ({u['user_id']}, {u['role']}, {u['how']})")
    if not result["on_duty"]:
        err("sharon: nobody is on duty now: out-of-hours protections apply and alerts go to the fallback")
    return 0


async def cmd_rota(args: argparse.Namespace) -> int:
    """``sharon rota SERVICE``: who is on duty now, the weekly schedule and the fallback."""
    result = await call(args, "rota", service_id=args.service)
    if args.json:
        print_json(result)
        return 0
    out(f"on duty now: {', '.join(render.clean(u['pseudonym']) + ' (' + u['how'] + ')' for u in result['on_duty']) or 'nobody'}")
    for slot in result["schedule"]:
        out(f"schedule: {slot['day']} {slot['start']}-{slot['end']} UTC  {' '.join(slot['user_ids'])}")
    out(f"fallback: {', '.join(result['fallback'])}  ->  "
        f"{', '.join(render.clean(u['pseudonym']) for u in result['fallback_users']) or 'nobody'}")
    return 0


async def _fetch(client: Any, service: Optional[str]) -> Dict[str, Any]:
    fields = {"service_id": service} if service else {}
    return await client.request("queue", **fields)


async def _live(client: Any, args: argparse.Namespace) -> int:
    await client.sync()
    stamp = ""
    while True:
        got = await _fetch(client, args.service)
        skew = got["now_ts"] - int(time.time() * 1000)
        fetched = time.monotonic()
        while time.monotonic() - fetched < REFETCH_S:
            lines = queue_lines(got["items"], skew)
            sys.stdout.write("\x1b[2J\x1b[H")
            out(f"triage queue: {got['total']} open  (live; Ctrl-C to stop){stamp}")
            for line in lines or ["  nothing waiting"]:
                out(line)
            sys.stdout.flush()
            try:
                frame = await client.next_frame(timeout_s=REFRESH_S)
            except (asyncio.TimeoutError, TimeoutError):
                continue
            if frame.get("op") in LIVE_OPS:
                sys.stdout.write("\a")
                stamp = f"  last {frame['op']} at {time.strftime('%H:%M:%S')}"
                break


async def cmd_queue(args: argparse.Namespace) -> int:
    """``sharon queue [--service S] [--once]`` and ``sharon queue ACTION ITEM ...``."""
    client = await authed(args)
    try:
        action = args.queue_action or "list"
        if action == "list":
            live = not args.once and not args.json and sys.stdout.isatty()
            if live:
                try:
                    return await _live(client, args)
                except KeyboardInterrupt:  # pragma: no cover - interactive
                    return 0
            got = await _fetch(client, args.service)
            if args.json:
                for item in got["items"]:
                    print_json(item)
            else:
                for line in queue_lines(got["items"], got["now_ts"] - int(time.time() * 1000)):
                    out(line)
            return 0
        if action == "scan":
            print_json(await client.request("triage_scan", service_id=args.service_id))
            return 0
        fields: Dict[str, Any] = {"item_id": args.item}
        if action == "resolve":
            fields["outcome"] = args.outcome
        if getattr(args, "note", None):
            fields["note"] = args.note
        result = await client.request(f"queue_{action}", **fields)
        if args.json:
            print_json(result)
        elif action == "escalate":
            out(f"{args.item} escalated to {len(result['escalated_to'])} clinician(s)"
                f"{' on duty' if result['on_duty'] else ''}")
        elif action == "resolve":
            out(f"{args.item} resolved: {result['outcome']} ({result['reporters_told']} reporter(s) told)")
        else:
            item = result["item"]
            out(f"{item['item_id']}  {item['status']}  due in {format_countdown(item['countdown_ms'])}")
        return 0
    finally:
        await client.close()


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the report, duty, rota and queue commands."""
    c = cmd("report", "report a message, post, DM or member to the moderators (you stay anonymous to them)")
    c.add_argument("room", help="room ID or name")
    c.add_argument("event", nargs="?", help="event ID of the message or post")
    c.add_argument("--user", help="user ID of the member (instead of, or with, an event)")
    c.add_argument("--category", required=True, choices=CATEGORIES)
    c.add_argument("--note", help="anything the moderators should know (up to 1000 characters)")
    c = cmd("my-reports", "your reports and their outcomes")
    c.add_argument("--json", action="store_true")
    c = cmd("duty", "go on or off duty for a service (staff)")
    c.add_argument("state", choices=("on", "off"))
    c.add_argument("service", help="service ID")
    c.add_argument("--json", action="store_true")
    c = cmd("rota", "who is on duty now, the schedule and the fallback (staff)")
    c.add_argument("service", help="service ID")
    c.add_argument("--json", action="store_true")
    q = cmd("queue", "the triage queue: a live view with countdowns, or claim/release/resolve/escalate an item")
    q.add_argument("--service", help="one service (default: every service you staff)")
    q.add_argument("--once", action="store_true", help="print the queue once instead of the live view")
    q.add_argument("--json", action="store_true", help="one JSON item (or result) per line")
    sub = q.add_subparsers(dest="queue_action", metavar="ACTION")
    for name, what in (("claim", "take an item"), ("release", "give an item back"),
                       ("resolve", "close an item with an outcome (reporters are told)"),
                       ("escalate", "pass an item to the service's clinicians")):
        p = sub.add_parser(name, help=what)
        p.add_argument("item", help="item ID (tq_...)")
        if name == "resolve":
            p.add_argument("outcome", choices=OUTCOMES)
        if name in ("resolve", "escalate"):
            p.add_argument("--note", help="a note for the record (and the clinician)")
        p.add_argument("--json", action="store_true")
    p = sub.add_parser("scan", help="look for unanswered posts now")
    p.add_argument("service_id", help="service ID")
    return {"report": cmd_report, "my-reports": cmd_my_reports, "duty": cmd_duty, "rota": cmd_rota,
            "queue": cmd_queue}
