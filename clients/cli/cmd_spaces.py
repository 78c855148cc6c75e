"""``sharon`` commands for services: list, create, add members, rooms, settings."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Dict

from clients.cli import render
from clients.cli.main import CliError, out, print_json
from clients.cli.main import call as _call

__all__ = ["register"]

ROLES = ("member", "carer", "peer", "clinician", "moderator", "admin")


def _settings(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("settings must be a JSON object, e.g. '{\"trending\": false}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("settings must be a JSON object")
    return value


async def cmd_services(args: argparse.Namespace) -> int:
    """``sharon services``: the services you belong to (admins: all)."""
    services = (await _call(args, "services"))["services"]
    for s in services:
        if args.json:
            print_json(s)
        else:
            out(f"{s['service_id']}  {render.clean(s['name'])}  role={s['role']}  rooms={s['rooms']}")
    return 0


async def cmd_create_service(args: argparse.Namespace) -> int:
    """``sharon create-service NAME``: prints the service ID (server admins only)."""
    fields: Dict[str, Any] = {"name": args.name}
    if args.topic:
        fields["topic"] = args.topic
    if args.settings is not None:
        fields["settings"] = args.settings
    out((await _call(args, "create_service", **fields))["service_id"])
    return 0


async def cmd_service_add(args: argparse.Namespace) -> int:
    """``sharon service-add SERVICE USER [--role ROLE]``: prints the role event ID."""
    out((await _call(args, "service_add_member", service_id=args.service, user_id=args.user,
                     role=args.role))["event_id"])
    return 0


async def cmd_service_rooms(args: argparse.Namespace) -> int:
    """``sharon service-rooms SERVICE``: the rooms of a service you can see."""
    rooms = (await _call(args, "service_rooms", service_id=args.service))["rooms"]
    for r in rooms:
        if args.json:
            print_json(r)
        else:
            unread = f"  unread={r['unread']}" if "unread" in r else ""
            out(f"{r['room_id']}  {r['kind']:<5}  {render.clean(r['name'])}  "
                f"members={r['members']}  you={r['membership'] or '-'}{unread}")
    return 0


async def cmd_service_settings(args: argparse.Namespace) -> int:
    """``sharon service-settings SERVICE JSON``: change settings; prints the result."""
    if args.settings is None:
        raise CliError("usage", "give the settings to change as a JSON object")
    print_json((await _call(args, "service_settings", service_id=args.service, settings=args.settings))["settings"])
    return 0


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the service commands to the parser."""
    c = cmd("services", "list the services you belong to")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c = cmd("create-service", "create a service (server admins); prints its ID")
    c.add_argument("name")
    c.add_argument("--topic")
    c.add_argument("--settings", type=_settings, help="JSON object, e.g. '{\"kinds\": [\"chat\", \"forum\"]}'")
    c = cmd("service-add", "add a user to a service (staff); prints the role event ID")
    c.add_argument("service")
    c.add_argument("user", help="user ID (@localpart:server)")
    c.add_argument("--role", choices=ROLES, default="member")
    c = cmd("service-rooms", "list the rooms of a service")
    c.add_argument("service")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c = cmd("service-settings", "change a service's settings (admins)")
    c.add_argument("service")
    c.add_argument("settings", type=_settings, help="JSON object of the settings to change")
    return {"services": cmd_services, "create-service": cmd_create_service, "service-add": cmd_service_add,
            "service-rooms": cmd_service_rooms, "service-settings": cmd_service_settings}
