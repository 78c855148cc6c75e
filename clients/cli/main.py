"""``sharon``: the terminal client (one command per operation, plus ``sharon chat``).

Commands that create something print its ID alone on stdout (user, room or event ID) so
scripts can capture it; notes for people go to stderr. Errors go to stderr as
``sharon: error: CODE: REASON (field: X)`` with exit status 1; usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import os
import sys
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence

from clients import runtime
from clients.cli import counter, render
from clients.config import ConfigError, Session, delete_session, load_session, save_session
from protocol.errors import SharonError, UnknownToken

__all__ = ["main", "build_parser", "CliError", "DEFAULT_SERVER", "format_error",
           "authed", "call", "out", "err", "room_id_of", "print_json"]

DEFAULT_SERVER = "ws://127.0.0.1:8448/ws"
ROOM_KINDS = ("chat", "dm", "forum", "wall", "blog")
DEVICE_NAME = "sharon cli"  # never the host name: it could identify the person
RECONNECT_MAX_S = 10.0


class CliError(Exception):
    """A failure the CLI reports as ``CODE: REASON (field: X)`` and exit status 1."""

    def __init__(self, code: str, reason: str, field: Optional[str] = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.field = code, reason, field


def format_error(code: str, reason: str, field: Optional[str] = None) -> str:
    """The one-line error message printed on stderr."""
    suffix = f" (field: {field})" if field else ""
    return f"sharon: error: {code}: {reason}{suffix}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    p = argparse.ArgumentParser(prog="sharon", description="Terminal client for a SHaRON server.")
    p.add_argument(
        "--server",
        type=_server_url,
        default=os.environ.get("SHARON_SERVER") or DEFAULT_SERVER,
        help=f"WebSocket URL of the server (env SHARON_SERVER, default {DEFAULT_SERVER})",
    )
    p.add_argument("--json-frames", action="store_true", help="speak JSON text frames instead of msgpack")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    for name, verb in (("register", "create an account and log in"), ("login", "log in as a new device")):
        c = cmd(name, f"{verb} (password from SHARON_PASSWORD or a prompt); prints your user ID")
        c.add_argument("pseudonym")
        c.add_argument("--device-name", default=DEVICE_NAME, help="a name for this device")
    sub.choices["register"].add_argument(
        "--invite", metavar="CODE", help="the invite code (or link) your clinician gave you: joins their service")
    cmd("logout", "log this device out and forget its token")
    cmd("whoami", "show the saved session for the server")
    c = cmd("rooms", "list the rooms you are in or invited to")
    c.add_argument("--json", action="store_true", help="one JSON room summary per line")
    c = cmd("create-room", "create a room; prints its room ID")
    c.add_argument("name")
    c.add_argument("--kind", required=True, choices=ROOM_KINDS)
    c.add_argument("--public", action="store_true", help="anyone may join without an invite")
    c.add_argument("--topic")
    for name, what in (("join", "join a room"), ("leave", "leave a room")):
        c = cmd(name, f"{what}; prints the membership event ID")
        c.add_argument("room", help="room ID, or the name of one of your rooms")
    c = cmd("invite", "invite a user to a room; prints the invite event ID")
    c.add_argument("room", help="room ID, or the name of one of your rooms")
    c.add_argument("user", help="user ID (@localpart:server)")
    c = cmd("send", f"send a message (at most {counter.MAX_BODY_CHARS} characters, or the room's lower limit, see `sharon limits`; '-' reads stdin); prints its event ID")
    c.add_argument("room", help="room ID, or the name of one of your rooms")
    c.add_argument("text")
    c = cmd("history", "show the latest messages of a room, oldest first")
    c.add_argument("room", help="room ID, or the name of one of your rooms")
    c.add_argument("--limit", type=_positive, default=20, help="number of messages (default 20)")
    c.add_argument("--json", action="store_true", help="one JSON client event per line")
    c.add_argument("--all", action="store_true", help="include joins, invites and other state events")
    c = cmd("tail", "follow a room: print new messages as they arrive")
    c.add_argument("room", help="room ID, or the name of one of your rooms")
    c.add_argument("--since", type=_non_negative, help="first replay every event after this stream position")
    c.add_argument("--count", type=_positive, help="stop after this many messages")
    c.add_argument("--json", action="store_true", help="one JSON client event per line")
    c.add_argument("--all", action="store_true", help="include joins, invites and other state events")
    c = cmd("chat", "open the interactive chat")
    c.add_argument("room", nargs="?", help="room to open first")
    c = sub.choices["create-room"]
    c.add_argument("--service", help="service ID the room belongs to")
    for name in EXTENSIONS:
        try:
            module = importlib.import_module(f"clients.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"clients.cli.cmd_{name}":
                continue
            raise
        COMMANDS.update(module.register(cmd))
    return p


EXTENSIONS = (
    "spaces", "dms", "content", "social", "media", "invites", "staff", "controls", "triage", "moderation",
)
"""Feature command modules ``clients/cli/cmd_<name>.py``: ``register(cmd)`` adds subparsers
with ``cmd(name, help)`` and returns ``{name: async handler(args) -> exit status}``."""


def _server_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not a WebSocket URL (ws://host:port/ws or wss://...): {text!r}")
    return text


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``sharon`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.encoding = "json" if args.json_frames else "msgpack"
    try:
        return runtime.run(COMMANDS[args.command](args), timeout_s=None) or 0
    except CliError as e:
        _err(format_error(e.code, e.reason, e.field))
    except SharonError as e:
        _err(format_error(e.code, e.reason, e.field))
    except ConfigError as e:
        _err(format_error("config", str(e)))
    except TimeoutError as e:
        _err(format_error("timeout", str(e) or "the server did not answer in time"))
    except (ConnectionError, OSError) as e:
        _err(format_error("connection", str(e) or type(e).__name__))
    except KeyboardInterrupt:
        return 130
    return 1


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _out(line: str) -> None:
    print(line, flush=True)


# -- sessions --------------------------------------------------------------------------------


def _password(confirm: bool) -> str:
    env = os.environ.get("SHARON_PASSWORD")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise CliError("no_password", "no password: set SHARON_PASSWORD or run in a terminal")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Password again: ") != password:
        raise CliError("no_password", "the passwords do not match")
    return password


async def _connect(args: argparse.Namespace) -> Any:
    from clients.client import SharonClient  # after runtime.run installed the reactor

    return await SharonClient.connect(args.server, encoding=args.encoding)


def _require_session(args: argparse.Namespace) -> Session:
    session = load_session(args.server)
    if session is None:
        raise CliError("not_logged_in", f"not logged in to {args.server}; run `sharon login PSEUDONYM` first")
    return session


async def _authed(args: argparse.Namespace) -> Any:
    """A connection authenticated with the saved token (the caller closes it)."""
    session = _require_session(args)
    client = await _connect(args)
    try:
        await client.auth(session.token)
    except UnknownToken:
        await client.close()
        delete_session(args.server)
        raise CliError(
            "not_logged_in",
            f"the saved session for {args.server} is no longer valid; run `sharon login {session.pseudonym}`",
        ) from None
    except BaseException:
        await client.close()
        raise
    return client


async def call(args: argparse.Namespace, op: str, **fields: Any) -> Dict[str, Any]:
    """One request on a fresh authenticated connection, closed afterwards (the commands of
    spaces, invites and controls use it)."""
    client = await _authed(args)
    try:
        return await client.request(op, **fields)
    finally:
        await client.close()


async def _sign_in(args: argparse.Namespace, op: str) -> int:
    password = _password(confirm=op == "register")
    client = await _connect(args)
    try:
        invite = getattr(args, "invite", None)
        if op == "register" and invite:
            code = invite.rsplit("#", 1)[-1].strip()  # a link carries the code in its fragment
            fields = {"pseudonym": args.pseudonym, "password": password, "invite_code": code}
            if args.device_name:
                fields["device_name"] = args.device_name
            result = await client.request("register", **fields)
        else:
            result = await getattr(client, op)(args.pseudonym, password, device_name=args.device_name)
    finally:
        await client.close()
    save_session(
        Session(
            server=args.server,
            token=result["token"],
            user_id=result["user_id"],
            pseudonym=result["pseudonym"],
            device_id=result["device_id"],
        )
    )
    done = "registered and logged in" if op == "register" else "logged in"
    _err(f"sharon: {done} as {render.clean(result['pseudonym'])} (device {result['device_id']})")
    _out(result["user_id"])
    return 0


async def cmd_register(args: argparse.Namespace) -> int:
    """``sharon register PSEUDONYM``."""
    return await _sign_in(args, "register")


async def cmd_login(args: argparse.Namespace) -> int:
    """``sharon login PSEUDONYM``."""
    return await _sign_in(args, "login")


async def cmd_logout(args: argparse.Namespace) -> int:
    """``sharon logout``: revoke the token on the server, then forget it locally."""
    session = _require_session(args)
    client = await _connect(args)
    try:
        await client.auth(session.token)
        await client.logout()
    except UnknownToken:
        pass  # already revoked: forgetting it locally is all that is left
    finally:
        await client.close()
    delete_session(args.server)
    _err(f"sharon: logged out {render.clean(session.pseudonym)}")
    return 0


async def cmd_whoami(args: argparse.Namespace) -> int:
    """``sharon whoami``: the saved session, without contacting the server."""
    session = _require_session(args)
    _out(f"{render.clean(session.pseudonym)} {session.user_id} device {session.device_id} on {session.server}")
    return 0


# -- rooms and messages ----------------------------------------------------------------------


async def _room_id(client: Any, room: str) -> str:
    """``room`` if it is a room ID, else the ID of the caller's one room with that name."""
    if room.startswith("!"):
        return room
    matches = [r for r in await client.rooms() if isinstance(r.get("name"), str) and r["name"].casefold() == room.casefold()]
    if len(matches) == 1:
        return matches[0]["room_id"]
    if not matches:
        raise CliError("room_not_found", f"you have no room named {room!r}; use a room ID (see `sharon rooms`)", "room")
    raise CliError("conflict", f"several of your rooms are named {room!r}; use a room ID (see `sharon rooms`)", "room")


async def cmd_rooms(args: argparse.Namespace) -> int:
    """``sharon rooms``: a table (or JSON lines) of the caller's rooms."""
    client = await _authed(args)
    try:
        rooms = await client.rooms()
    finally:
        await client.close()
    if args.json:
        for r in rooms:
            _out(render.event_json(r))
        return 0
    rows = [["ROOM ID", "KIND", "NAME", "MEMBERS", "MEMBERSHIP"]]
    for r in rooms:
        rows.append([str(r.get("room_id")), render.clean(r.get("kind")), render.clean(r.get("name")), str(r.get("members")), render.clean(r.get("membership"))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


async def cmd_create_room(args: argparse.Namespace) -> int:
    """``sharon create-room NAME --kind KIND``: prints only the room ID."""
    client = await _authed(args)
    try:
        if args.service:
            result = await client.request("create_room", kind=args.kind, name=args.name, public=args.public,
                                          service_id=args.service, **({"topic": args.topic} if args.topic else {}))
        else:
            result = await client.create_room(args.kind, args.name, topic=args.topic, public=args.public)
    finally:
        await client.close()
    _out(result["room_id"])
    return 0


async def _membership(args: argparse.Namespace, op: str, *extra: str) -> int:
    client = await _authed(args)
    try:
        result = await getattr(client, op)(await _room_id(client, args.room), *extra)
    finally:
        await client.close()
    _out(result["event_id"])
    return 0


async def cmd_join(args: argparse.Namespace) -> int:
    """``sharon join ROOM``."""
    return await _membership(args, "join")


async def cmd_leave(args: argparse.Namespace) -> int:
    """``sharon leave ROOM``."""
    return await _membership(args, "leave")


async def cmd_invite(args: argparse.Namespace) -> int:
    """``sharon invite ROOM USER``."""
    return await _membership(args, "invite", args.user)


async def cmd_send(args: argparse.Namespace) -> int:
    """``sharon send ROOM TEXT``: checks the length locally, prints the event ID."""
    body = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    size = counter.count(body)
    if size.state is counter.CounterState.EMPTY:
        raise CliError("bad_field", "the message is empty", "body")
    if size.state is counter.CounterState.OVER:  # over the default: refused before connecting
        raise CliError("too_large", f"the message is {size.chars} characters; the limit is {size.limit}", "body")
    client = await _authed(args)
    try:
        room_id = await _room_id(client, args.room)
        size = counter.count(body, await counter.room_limit(client, room_id))  # the room's published limit
        if size.state is counter.CounterState.OVER:
            raise CliError("too_large", f"the message is {size.chars} characters; the limit is {size.limit}", "body")
        await client.sync()  # live, so the server's crisis signposting for a risky post reaches us
        result = await client.send(room_id, body)
        pushed = client.take_frames()  # pushed before the reply on this connection
    finally:
        await client.close()
    signs = [f for f in pushed if f.get("op") == "signpost"] or ([result["signpost"]] if result.get("signpost") else [])
    for frame in signs[-1:]:
        _err(signpost_text(frame))
    if result.get("held"):  # pre-moderation or out of hours (#6): not published yet
        _out(result["held_id"])
        _err(f"sharon: held for review: {render.clean(result.get('notice') or '')}")
        return 0
    _out(result["event_id"])
    return 0


NOTICE_OPS = ("signpost", "held_approved", "held_rejected", "moderated", "sanction", "sanction_lifted",
              "appeal_decided", "report_outcome")
"""Pushed frames that tell a member something (#6); shown by ``sharon chat`` and ``tail``."""


def notice_of(frame: Optional[Dict[str, Any]]) -> str:
    """The one-line text of a pushed notice to this member, or "" for other frames."""
    if not frame or frame.get("op") not in NOTICE_OPS:
        return ""
    if frame["op"] == "signpost":
        return render.clean(signpost_text(frame, prefix="").replace("\n", " "))
    notice = frame.get("notice") or frame.get("message")
    if notice is None and isinstance(frame.get("sanction"), dict):
        notice = frame["sanction"].get("notice")
    return render.clean(notice or frame["op"].replace("_", " "))


def _show_notice(frame: Dict[str, Any]) -> None:
    """A pushed notice to this member (#6: moderation, held posts, report outcomes) on stderr."""
    text = notice_of(frame)
    if text:
        _err(f"sharon: {text}")


def signpost_text(frame: Dict[str, Any], prefix: str = "sharon: ") -> str:
    """The server's crisis signposting (``signpost`` push) as plain lines for stderr."""
    lines = [f"{prefix}{render.clean(frame.get('message') or '')}"]
    for r in frame.get("resources") or []:
        how = "; ".join(render.clean(str(r[k])) for k in ("phone", "text", "url", "hours") if r.get(k))
        lines.append(f"  {render.clean(str(r.get('name', '')))}: {how}")
    return "\n".join(lines)


def _print_event(args: argparse.Namespace, event: Any, view: Any = None) -> bool:
    """Print ``event`` if this command shows it; True if printed. Without ``--all``, the
    member's controls apply (``clients.cli.member_view``): muted events and hidden
    content-warning categories are left out, blurred ones print as a content-warning line."""
    if not args.all:
        from clients.cli.member_view import BLUR, HIDE, MemberView, blurred_copy
        if not render.is_message(event):
            return False
        verdict = (view or MemberView()).verdict(event)  # history: the server's marks alone
        if verdict == HIDE:
            return False
        if verdict == BLUR:
            event = blurred_copy(event, "run with --all to show")
    _out(render.event_json(event) if args.json else render.event_line(event))
    return True


async def cmd_history(args: argparse.Namespace) -> int:
    """``sharon history ROOM``: the last ``--limit`` messages, oldest first."""
    client = await _authed(args)
    try:
        room = await _room_id(client, args.room)
        wanted: List[Any] = []
        before = None
        while len(wanted) < args.limit:
            page = await client.history(room, dir="b", from_pos=before, limit=min(100, args.limit))
            wanted.extend(e for e in page["events"] if args.all or render.is_message(e))
            before = page.get("next")
            if before is None:
                break
    finally:
        await client.close()
    for event in reversed(wanted[: args.limit]):
        _print_event(args, event)
    return 0


async def cmd_tail(args: argparse.Namespace) -> int:
    """``sharon tail ROOM``: replay after ``--since``, then follow; reconnects and resumes if the connection drops."""
    client = await _authed(args)
    printed = 0
    shown = -1  # highest pos handled: never print an event twice across reconnects
    since = args.since
    delay = 0.5
    try:
        room = await _room_id(client, args.room)
        await client.history(room, limit=1)  # not a member: fail now rather than wait forever
        from clients.cli.member_view import MemberView
        view = await MemberView.fetch(client)  # live frames are shared: your controls apply here
        notice = next((r.get("moderation_notice") for r in await client.rooms() if r.get("room_id") == room), None)
        if isinstance(notice, str):
            _err(f"sharon: {render.clean(notice)}")  # the moderation notice (#5)
        while True:
            try:
                live = await client.sync(since=since)
                _err(f"sharon: following {room} (live from position {live['pos']}; Ctrl-C to stop)")
                delay = 0.5
                while args.count is None or printed < args.count:
                    event = await client.next_event(timeout_s=None)
                    for frame in client.take_frames():  # pushed frames must not pile up unread
                        _show_notice(frame)
                    pos = event.get("pos")
                    if event.get("room_id") != room or (type(pos) is int and pos <= shown):
                        continue
                    shown = pos if type(pos) is int else shown
                    if _print_event(args, event, view):
                        printed += 1
                return 0
            except ConnectionError as e:
                since = client.last_pos if client.last_pos is not None else since
                _err(f"sharon: {e}; reconnecting")
            await client.close()
            client = await _reconnect(args, delay)
            delay = min(delay * 2, RECONNECT_MAX_S)
    finally:
        await client.close()


async def _reconnect(args: argparse.Namespace, delay_s: float) -> Any:
    """Connect and authenticate again, retrying with growing delays (seconds) until it works."""
    while True:
        await asyncio.sleep(delay_s)
        try:
            return await _authed(args)
        except (ConnectionError, OSError, TimeoutError) as e:
            _err(f"sharon: still unreachable ({e}); retrying")
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)


async def cmd_chat(args: argparse.Namespace) -> int:
    """``sharon chat``: the interactive terminal chat."""
    from clients.cli.chat import ChatApp

    client = await _authed(args)
    try:
        app = ChatApp(client, open_room=args.room)
        await app.run_async()
    finally:
        await client.close()
    return app.return_code or 0


COMMANDS = {
    "register": cmd_register,
    "login": cmd_login,
    "logout": cmd_logout,
    "whoami": cmd_whoami,
    "rooms": cmd_rooms,
    "create-room": cmd_create_room,
    "join": cmd_join,
    "leave": cmd_leave,
    "invite": cmd_invite,
    "send": cmd_send,
    "history": cmd_history,
    "tail": cmd_tail,
    "chat": cmd_chat,
}


# Public names for feature command modules (clients/cli/cmd_*.py).
authed = _authed
out = _out
err = _err
room_id_of = _room_id


def print_json(value: Any) -> None:
    """One JSON value on one line of stdout."""
    import json

    _out(json.dumps(value, ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
