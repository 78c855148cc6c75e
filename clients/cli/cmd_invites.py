"""``sharon`` commands for clinician invites and discharge (#5).

``sharon invites create SERVICE --identity FILE`` reads the person's identity as JSON from a
file (``-``: stdin), never from the command line, where it would land in shell history and
the process list. The code is printed once; the server keeps only its hash.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Dict

from clients.cli import render
from clients.cli.main import CliError, out, print_json
from clients.cli.main import call as _call

__all__ = ["register"]


def _read_identity(path: str) -> Dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise CliError("usage", f"cannot read the identity file: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError:
        raise CliError("usage", "the identity must be a JSON object: "
                                '{"name": ..., "date_of_birth": "YYYY-MM-DD", "nhs_number": ...}') from None
    if not isinstance(value, dict):
        raise CliError("usage", "the identity must be a JSON object")
    return value


async def cmd_invite(args: argparse.Namespace) -> int:
    """``sharon invites create|list|revoke``."""
    if args.action == "create":
        fields: Dict[str, Any] = {"service_id": args.target, "role": args.role,
                                  "identity": _read_identity(args.identity)}
        if args.note:
            fields["note"] = args.note
        result = await _call(args, "invite_create", **fields)
        if args.json:
            print_json(result)
        else:
            out(f"invite {result['invite_id']} ({result['role']}), valid until "
                f"{render.clean(str(result['expires_ts']))} (ms since the epoch)")
            out(f"code: {result['code']}")
            out(f"link: {result['link']}")
        print("sharon: give the code to the person privately; it will NOT be shown again "
              f"(they run: sharon register PSEUDONYM --invite CODE)", file=sys.stderr)
        return 0
    if args.action == "list":
        invites = (await _call(args, "invite_list", service_id=args.target))["invites"]
        for i in invites:
            if args.json:
                print_json(i)
            else:
                out(f"{i['invite_id']}  {i['role']:<6}  {i['status']:<8}  by {render.clean(i['created_by_pseudonym'])}"
                    f"  expires={i['expires_ts']}" + (f"  note={render.clean(i['note'])}" if i.get("note") else ""))
        return 0
    result = await _call(args, "invite_revoke", invite_id=args.target)
    out(f"{result['invite_id']} {result['status']}")
    return 0


async def cmd_discharge(args: argparse.Namespace) -> int:
    """``sharon discharge SERVICE USER --reason TEXT``."""
    result = await _call(args, "service_discharge", service_id=args.service, user_id=args.user, reason=args.reason)
    if args.json:
        print_json(result)
    else:
        what = ("left the service and its rooms" if result["policy"] == "close"
                else "stays as a peer member (policy: keep)")
        out(f"discharged {args.user}: {what}; record {result['discharge_id']}")
    return 0


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add ``invite`` and ``discharge`` to the parser."""
    c = cmd("invites", "clinicians and admins: invite a person into a service (create), list or revoke invites")
    c.add_argument("action", choices=("create", "list", "revoke"))
    c.add_argument("target", help="service ID (create, list) or invite ID (revoke)")
    c.add_argument("--identity", metavar="FILE", help="create: the person's identity as a JSON file ('-': stdin)")
    c.add_argument("--role", choices=("member", "carer"), default="member", help="create: the role they join with")
    c.add_argument("--note", help="create: a short note for staff (no identifying details)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c = cmd("discharge", "clinicians and admins: discharge a member from a service (per its discharge_policy)")
    c.add_argument("service")
    c.add_argument("user", help="user ID (@localpart:server)")
    c.add_argument("--reason", required=True, help="why (kept in the staff record and the audit log)")
    c.add_argument("--json", action="store_true", help="print JSON")

    async def invite(args: argparse.Namespace) -> int:
        if args.action == "create" and not args.identity:
            raise CliError("usage", "invite create needs --identity FILE (a JSON file, or '-' for stdin)")
        return await cmd_invite(args)

    return {"invites": invite, "discharge": cmd_discharge}
