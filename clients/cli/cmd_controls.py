"""``sharon`` commands for member controls (#6): block, mute words, content warnings, breaks.

``sharon block USER`` / ``unblock USER`` / ``blocks``; ``sharon mute-words [WORD ...]``
(no words: show them; ``--clear``: remove them all); ``sharon cw [CATEGORY=show|blur|hide ...]``;
``sharon break on [--hours H]`` / ``break off`` / ``break``. Everything is private: the
blocked member is never told.

Live events are shared frames, so the server cannot mark them per receiver: ``sharon tail``
and ``sharon chat`` apply your mute words and content-warning preferences to live events
themselves, and ``sharon history`` follows the server's marks (``"muted"``, ``"blurred"``);
all three use ``clients.cli.member_view`` (``--all`` shows everything).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List

from clients.cli import render
from clients.cli.main import out, print_json
from clients.cli.main import call as _call

__all__ = ["register", "mute_filter", "CW_CATEGORIES"]

CW_CATEGORIES = ("self_harm", "suicide", "eating", "abuse", "substances", "distress", "other")
CHOICES = ("show", "blur", "hide")


def mute_filter(words: List[str]) -> Callable[[Dict[str, Any]], bool]:
    """A predicate: True when an event's title or body contains one of ``words`` (whole
    words, case-insensitive): the same rule as the server's (``clients.cli.member_view``)."""
    from clients.cli.member_view import MemberView
    return MemberView(words).muted


def _who(entry: Dict[str, Any]) -> str:
    return f"{entry['user_id']}  {render.clean(entry.get('pseudonym'))}"


async def cmd_block(args: argparse.Namespace) -> int:
    """``sharon block USER``: stop seeing a member (they are not told)."""
    result = await _call(args, "block", user_id=args.user)
    out(f"blocked {result['user_id']}")
    return 0


async def cmd_unblock(args: argparse.Namespace) -> int:
    """``sharon unblock USER``: see a member again."""
    result = await _call(args, "unblock", user_id=args.user)
    out(f"unblocked {result['user_id']}")
    return 0


async def cmd_blocks(args: argparse.Namespace) -> int:
    """``sharon blocks``: the members you block."""
    result = await _call(args, "blocks")
    for entry in result["blocks"]:
        print_json(entry) if args.json else out(_who(entry))
    return 0


async def cmd_mute_words(args: argparse.Namespace) -> int:
    """``sharon mute-words [WORD ...] [--clear]``: set (or show) your mute words."""
    if args.clear and args.words:
        raise SystemExit("sharon: give words or --clear, not both")
    if args.clear or args.words:
        result = await _call(args, "mute_words_set", words=[] if args.clear else args.words)
    else:
        result = await _call(args, "mute_words")
    if args.json:
        print_json(result)
    else:
        for word in result["words"]:
            out(render.clean(word))
    return 0


async def cmd_cw(args: argparse.Namespace) -> int:
    """``sharon cw [CATEGORY=show|blur|hide ...]``: content-warning preferences."""
    changes: Dict[str, str] = {}
    for item in args.prefs:
        category, sep, choice = item.partition("=")
        if not sep or category not in CW_CATEGORIES or choice not in CHOICES:
            raise SystemExit(f"sharon: {item!r}: use CATEGORY=show|blur|hide with CATEGORY one of "
                             f"{', '.join(CW_CATEGORIES)}")
        changes[category] = choice
    result = await (_call(args, "cw_prefs_set", categories=changes) if changes else _call(args, "cw_prefs"))
    if args.json:
        print_json(result)
    else:
        for category, choice in result["categories"].items():
            out(f"{category}={choice}")
    return 0


async def cmd_break(args: argparse.Namespace) -> int:
    """``sharon break [on|off] [--hours H]``: take a break from notifications and presence."""
    if args.state is None:
        result = (await _call(args, "controls"))["break"]
    else:
        fields: Dict[str, Any] = {"on": args.state == "on"}
        if args.state == "on" and args.hours is not None:
            fields["until_ts"] = int(time.time() * 1000 + args.hours * 3600 * 1000)
        result = await _call(args, "break_set", **fields)
    if args.json:
        print_json(result)
    elif not result["on"]:
        out("not on a break")
    elif result.get("until_ts"):
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(result["until_ts"] / 1000))
        out(f"on a break until {until}")
    else:
        out("on a break until you end it (sharon break off)")
    return 0


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not 0 < value <= 90 * 24:
        raise argparse.ArgumentTypeError("a break lasts more than 0 and at most 2160 hours (90 days)")
    return value


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the member-control commands to the parser."""
    c = cmd("block", "stop seeing a member's messages, mentions and DMs (they are not told)")
    c.add_argument("user", help="user ID (@localpart:server)")
    c = cmd("unblock", "see a member you blocked again")
    c.add_argument("user", help="user ID (@localpart:server)")
    c = cmd("blocks", "list the members you block")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c = cmd("mute-words", "set your mute words (no words: show them)")
    c.add_argument("words", nargs="*", help="words or phrases to mute (replaces the list)")
    c.add_argument("--clear", action="store_true", help="remove every mute word")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c = cmd("cw", "content-warning preferences: CATEGORY=show|blur|hide (none: show them)")
    c.add_argument("prefs", nargs="*", metavar="CATEGORY=CHOICE")
    c.add_argument("--json", action="store_true", help="one JSON object")
    c = cmd("break", "take a break: notifications are kept but not pushed, typing is not shown")
    c.add_argument("state", nargs="?", choices=("on", "off"), help="start or end the break (none: show it)")
    c.add_argument("--hours", type=_hours, help="end the break by itself after this many hours")
    c.add_argument("--json", action="store_true", help="one JSON object")
    return {"block": cmd_block, "unblock": cmd_unblock, "blocks": cmd_blocks,
            "mute-words": cmd_mute_words, "cw": cmd_cw, "break": cmd_break}
