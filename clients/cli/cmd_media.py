"""``sharon`` commands for media: upload a file and post it in a room, download a file.

The HTTP base URL is derived from the WebSocket URL (``ws://host:port/ws`` ->
``http://host:port``, ``wss`` -> ``https``). Transfers run in a worker thread with urllib,
streaming in 1 MiB chunks; on a terminal, progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from clients.cli import render
from clients.cli.main import CliError, authed, err, out, print_json, room_id_of
from clients.config import load_session
from protocol.media import extension_for, is_media_hash

__all__ = ["register", "http_base"]

CHUNK = 1024 * 1024


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def http_base(ws_url: str) -> str:
    """``http(s)://host:port`` of the server whose WebSocket is at ``ws_url``."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urllib.parse.urlunsplit((scheme, parts.netloc, "", "", ""))


class _Progress:
    """A one-line progress report on stderr, only when stderr is a terminal."""

    def __init__(self, verb: str, total: Optional[int]) -> None:
        self._verb, self._total, self._done = verb, total, 0
        self._live = sys.stderr.isatty()
        self._last = -1

    def add(self, n: int) -> None:
        self._done += n
        if not self._live:
            return
        mib = self._done / (1024 * 1024)
        if self._total:
            pct = int(self._done * 100 / self._total)
            if pct == self._last:
                return
            self._last = pct
            line = f"{self._verb} {pct:3d}%  {mib:.1f} of {self._total / (1024 * 1024):.1f} MiB"
        else:
            line = f"{self._verb} {mib:.1f} MiB"
        sys.stderr.write("\r" + line)
        sys.stderr.flush()

    def end(self) -> None:
        if self._live and self._done:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _http_error(e: urllib.error.HTTPError) -> CliError:
    try:
        body = json.loads(e.read() or b"{}")
    except ValueError:
        body = {}
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return CliError(body["code"], str(body.get("reason", "")), body.get("field"))
    return CliError("http", f"the server answered {e.code} {e.reason}")


def _token(args: argparse.Namespace) -> str:
    session = load_session(args.server)
    if session is None:
        raise CliError("not_logged_in", f"not logged in to {args.server}; run `sharon login PSEUDONYM` first")
    return session.token


def _upload(url: str, token: str, path: Path, size: int) -> Dict[str, Any]:
    progress = _Progress("uploading", size)

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while True:
                block = f.read(CHUNK)
                if not block:
                    return
                progress.add(len(block))
                yield block

    req = urllib.request.Request(url, data=chunks(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Length": str(size),
        "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise _http_error(e) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise CliError("connection", f"upload failed: {reason} (the server may have refused a file this large)") from None
    finally:
        progress.end()


def _download(url: str, token: str, target: Optional[str], digest: str) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        resp = urllib.request.urlopen(req, timeout=120)
    except urllib.error.HTTPError as e:
        raise _http_error(e) from None
    except urllib.error.URLError as e:
        raise CliError("connection", f"download failed: {e.reason}") from None
    with resp:
        length = resp.headers.get("Content-Length")
        progress = _Progress("downloading", int(length) if length and length.isdigit() else None)
        try:
            if target == "-":
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    sys.stdout.buffer.write(block)
                    progress.add(len(block))
                sys.stdout.buffer.flush()
                return "-"
            name = target or digest + extension_for(resp.headers.get_content_type())
            final = Path(name)
            fd, tmp = tempfile.mkstemp(dir=final.parent if str(final.parent) else ".", prefix=".sharon-dl-")
            try:
                with os.fdopen(fd, "wb") as f:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        progress.add(len(block))
                os.replace(tmp, final)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            return str(final)
        finally:
            progress.end()


async def cmd_upload(args: argparse.Namespace) -> int:
    """``sharon upload ROOM FILE [--caption TEXT]``: upload, post in the room, print the event ID."""
    path = Path(args.file)
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise CliError("usage", f"cannot read {args.file}: {e.strerror}", "file") from None
    if not path.is_file():
        raise CliError("usage", f"{args.file} is not a file", "file")
    token = _token(args)
    client = await authed(args)
    try:
        room_id = await room_id_of(client, args.room)
        query = urllib.parse.urlencode({"room_id": room_id, "name": args.name or path.name})
        result = await asyncio.to_thread(_upload, f"{http_base(args.server)}/api/v1/media/upload?{query}",
                                         token, path, size)
        fields: Dict[str, Any] = {"room_id": room_id, "hash": result["hash"], "txn_id": "up-" + secrets.token_hex(8)}
        if args.caption:
            fields["body"] = args.caption
        posted = await client.request("media_post", **fields)
    finally:
        await client.close()
    err(f"sharon: uploaded {result['mime']} ({result['size']} bytes) {result['hash']}")
    if posted.get("held"):  # held for review (#6): not published yet
        err(f"sharon: held for review: {render.clean(posted.get('notice') or '')}")
        out(posted["held_id"])
        return 0
    out(posted["event_id"])
    return 0


async def cmd_download(args: argparse.Namespace) -> int:
    """``sharon download ROOM HASH [-o FILE]``: save a room's file (``-o -``: to stdout)."""
    if not is_media_hash(args.hash):
        raise CliError("bad_field", "the hash is 64 lower-case hex digits (see the ps.media event)", "hash")
    token = _token(args)
    room_id = args.room
    if not room_id.startswith("!"):
        client = await authed(args)
        try:
            room_id = await room_id_of(client, args.room)
        finally:
            await client.close()
    url = f"{http_base(args.server)}/api/v1/media/{urllib.parse.quote(room_id, safe='')}/{args.hash}"
    saved = await asyncio.to_thread(_download, url, token, args.output, args.hash)
    if saved != "-":
        err(f"sharon: saved {saved}")
    return 0


async def cmd_media(args: argparse.Namespace) -> int:
    """``sharon media ROOM``: the files uploaded to a room, newest first."""
    client = await authed(args)
    try:
        room_id = await room_id_of(client, args.room)
        fields: Dict[str, Any] = {"room_id": room_id, "limit": min(args.limit, 100)}
        items = []
        while len(items) < args.limit:
            page = await client.request("media", **fields)
            items.extend(page["media"])
            if page["next"] is None:
                break
            fields["before"] = page["next"]
    finally:
        await client.close()
    for m in items[:args.limit]:
        if args.json:
            print_json(m)
        else:
            out(f"{m['hash']}  {m['mime']:<16}  {m['size']:>10}  {render.clean(m.get('name') or '-')}  "
                f"by {render.clean(m.get('uploader_pseudonym') or m['uploader'])}")
    return 0


def register(cmd: Callable[[str, str], argparse.ArgumentParser]) -> Dict[str, Any]:
    """Add the media commands to the parser."""
    c = cmd("upload", "upload an image, audio or video file and post it in a room; prints the event ID")
    c.add_argument("room", help="room ID, or the name of one of your rooms")
    c.add_argument("file")
    c.add_argument("--caption", help="text posted with the file")
    c.add_argument("--name", help="file name others see (default: the file's own name)")
    c = cmd("download", "download a file posted in a room")
    c.add_argument("room", help="room ID, or the name of one of your rooms")
    c.add_argument("hash", help="the file's hash (from the ps.media event)")
    c.add_argument("-o", "--output", help="where to save it ('-' for stdout; default: HASH.ext)")
    c = cmd("media", "list the files uploaded to a room, newest first")
    c.add_argument("room", help="room ID, or the name of one of your rooms")
    c.add_argument("--limit", type=_positive, default=50, help="how many (default 50)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    return {"upload": cmd_upload, "download": cmd_download, "media": cmd_media}
