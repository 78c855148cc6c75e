"""``sharon`` commands for moderation (#6): held posts, actions on events, sanctions, appeals.

- members: ``sharon held`` (your held and returned posts), ``my-sanctions``, ``appeal SANCTION TEXT
  [--signed-out PSEUDONYM]``, ``rules SERVICE``;
- staff: ``held --service S``, ``held-approve ID``, ``held-reject ID REASON [--rule R]``,
  ``premod SERVICE USER POSTS``, ``mod-hide EVENT RULE REASON``, ``mod-unhide EVENT REASON``,
  ``mod-redact EVENT RULE REASON``, ``mod-cw EVENT CATEGORY``, ``mod-lock ROOM THREAD RULE REASON
  [--unlock]``, ``sanction USER KIND RULE REASON [--service S] [--until ISO|+MINUTES]``,
  ``sanctions [--service S] [--user U] [--active]``, ``sanction-lift ID REASON``,
  ``appeals [--service S] [--all]``, ``appeal-decide ID upheld|overturned REASON``.

Every command prints the server's reply as JSON lines (one object per listed item).
"""

from __future__ import annotations

import argparse
import datetime
import time
from typing import Any, Callable, Dict, List, Optional

from clients.cli.main import authed, print_json, room_id_of

__all__ = ["register", "until_ms"]


def until_ms(value: Optional[str], now_ms: Optional[int] = None) -> Optional[int]:
    """``+MINUTES`` from now, epoch milliseconds, or an ISO date/time (UTC unless it says)."""
    if value is None:
        return None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if value.startswith("+") and value[1:].isdigit():
        return now + int(value[1:]) * 60_000
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not +MINUTES, epoch milliseconds or an ISO date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


async def _call(args: argparse.Namespace, op: str, fields: Dict[str, Any], listed: Optional[str] = None) -> int:
    client = await authed(args)
    try:
        if "room_id" in fields:
            fields["room_id"] = await room_id_of(client, fields["room_id"])
        result = await client.request(op, **{k: v for k, v in fields.items() if v is not None})
    finally:
        await client.close()
    if listed is not None:
        for item in result.get(listed, []):
            print_json(item)
    else:
        print_json(result)
    return 0


def _handlers() -> Dict[str, Callable[[argparse.Namespace], Any]]:
    async def held(a: argparse.Namespace) -> int:
        if a.service:
            return await _call(a, "held_list", {"service_id": a.service}, "held")
        return await _call(a, "held_mine", {}, "held")

    async def appeal(a: argparse.Namespace) -> int:
        if not a.signed_out:
            return await _call(a, "appeal", {"sanction_id": a.sanction_id, "text": a.text})
        from clients.cli import main as cli  # signed out: no saved session to use

        client = await cli._connect(a)
        try:
            result = await client.request("appeal_signed_out", pseudonym=a.signed_out,
                                          password=cli._password(False), sanction_id=a.sanction_id, text=a.text)
        finally:
            await client.close()
        print_json(result)
        return 0

    def simple(op: str, names: List[str], listed: Optional[str] = None, **extra: Callable[[Any], Any]):
        async def run(a: argparse.Namespace) -> int:
            fields = {n: getattr(a, n) for n in names}
            for key, get in extra.items():
                fields[key] = get(a)
            return await _call(a, op, fields, listed)
        return run

    return {
        "held": held,
        "held-approve": simple("held_approve", ["held_id"]),
        "held-reject": simple("held_reject", ["held_id", "reason", "rule"]),
        "premod": simple("premod_member", ["service_id", "user_id", "posts"]),
        "mod-hide": simple("mod_hide", ["event_id", "rule", "reason"]),
        "mod-unhide": simple("mod_unhide", ["event_id", "reason"]),
        "mod-redact": simple("mod_redact", ["event_id", "rule", "reason"]),
        "mod-cw": simple("mod_content_warning", ["event_id", "category", "rule", "reason"]),
        "mod-lock": simple("mod_lock", ["room_id", "thread_id", "rule", "reason"], locked=lambda a: not a.unlock),
        "rules": simple("mod_rules", ["service_id"], "rules"),
        "sanction": simple("sanction", ["user_id", "kind", "rule", "reason"],
                           service_id=lambda a: a.service, until_ts=lambda a: until_ms(a.until)),
        "sanctions": simple("sanctions", ["active"], "sanctions", service_id=lambda a: a.service,
                            user_id=lambda a: a.user),
        "my-sanctions": simple("my_sanctions", [], "sanctions"),
        "sanction-lift": simple("sanction_lift", ["sanction_id", "reason"]),
        "appeal": appeal,
        "appeals": simple("appeals", [], "appeals", service_id=lambda a: a.service, all=lambda a: a.all),
        "appeal-decide": simple("appeal_decide", ["appeal_id", "outcome", "reason"]),
    }


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the moderation commands to the parser."""
    c = cmd("held", "your held and returned posts (staff: --service lists posts waiting for review)")
    c.add_argument("--service", help="service ID: list its posts waiting for review (staff)")
    c = cmd("held-approve", "publish a held post (staff)")
    c.add_argument("held_id")
    c = cmd("held-reject", "return a held post to its author with a reason (staff)")
    c.add_argument("held_id")
    c.add_argument("reason")
    c.add_argument("--rule", help="the rule ID it breaks")
    c = cmd("premod", "hold a member's next POSTS posts for review, 0 to stop (staff)")
    c.add_argument("service_id")
    c.add_argument("user_id")
    c.add_argument("posts", type=int)
    for name, what, rule in (("mod-hide", "hide an event from peers while it is reviewed", True),
                             ("mod-unhide", "show a hidden event again", False),
                             ("mod-redact", "remove an event's content for everyone but staff", True)):
        c = cmd(name, f"{what} (staff)")
        c.add_argument("event_id")
        if rule:
            c.add_argument("rule", help="the rule ID it breaks")
        c.add_argument("reason")
    c = cmd("mod-cw", "put a content warning on an event (staff)")
    c.add_argument("event_id")
    c.add_argument("category", help="self_harm, suicide, eating, abuse, substances, distress or other")
    c.add_argument("--rule")
    c.add_argument("--reason")
    c = cmd("mod-lock", "lock a forum thread, citing a rule (staff, joined to the forum)")
    c.add_argument("room_id", help="forum room ID or name")
    c.add_argument("thread_id")
    c.add_argument("rule")
    c.add_argument("reason")
    c.add_argument("--unlock", action="store_true", help="unlock instead")
    c = cmd("rules", "a service's house rules")
    c.add_argument("service_id")
    c = cmd("sanction", "warn, mute, suspend or ban a member (staff)")
    c.add_argument("user_id")
    c.add_argument("kind", choices=("warn", "mute", "suspend", "ban"))
    c.add_argument("rule")
    c.add_argument("reason")
    c.add_argument("--service", help="service ID (omit: server-wide, server admins only)")
    c.add_argument("--until", help="when it ends: +MINUTES, epoch ms or ISO date/time (mute, suspend)")
    c = cmd("sanctions", "list sanctions (staff)")
    c.add_argument("--service")
    c.add_argument("--user")
    c.add_argument("--active", action="store_true", help="only those still in force")
    cmd("my-sanctions", "your sanctions, with their notices and appeals")
    c = cmd("sanction-lift", "end a sanction early (staff)")
    c.add_argument("sanction_id")
    c.add_argument("reason")
    c = cmd("appeal", "appeal a sanction (once)")
    c.add_argument("sanction_id")
    c.add_argument("text")
    c.add_argument("--signed-out", metavar="PSEUDONYM",
                   help="appeal without a session (a suspended account), password from SHARON_PASSWORD")
    c = cmd("appeals", "list appeals waiting for a decision (staff)")
    c.add_argument("--service")
    c.add_argument("--all", action="store_true", help="decided ones too")
    c = cmd("appeal-decide", "decide an appeal (a moderator other than the issuer)")
    c.add_argument("appeal_id")
    c.add_argument("outcome", choices=("upheld", "overturned"))
    c.add_argument("reason")
    return _handlers()
