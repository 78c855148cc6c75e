"""Small helpers for integration tests: make users and rooms on a real server."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

from clients.client import SharonClient
from protocol.errors import PseudonymRejected
from sharon_server.accounts import PseudonymScreen, pseudonym_skeleton

_SCREEN = PseudonymScreen()

PASSWORD = "correct horse battery"
_counter = itertools.count(1)
_SKELETONS: set = set()


def fresh_pseudonym(prefix: str = "peer") -> str:
    """A pseudonym unique within this test process.

    Staff titles ("admin", "mod") are screened out of pseudonyms (docs/protocol.md §8.5), so a
    prefix the screen refuses is disguised ("admin" -> "adxn") rather than failing sign-up."""
    while True:
        n = next(_counter)
        try:
            _SCREEN.check(f"{prefix}-{n}")
            name = f"{prefix}-{n}"
        except PseudonymRejected:
            name = f"{prefix[:2]}x{prefix[-1:]}-{n}"
        # Look-alike pseudonyms are refused (``peer-51`` reads as ``peers-1``): skip those.
        skeleton = pseudonym_skeleton(name)
        if skeleton not in _SKELETONS:
            _SKELETONS.add(skeleton)
            return name


async def user(server: Any, prefix: str = "peer", encoding: str = "msgpack") -> SharonClient:
    """Connect and register a new account; the client is authenticated, not yet live."""
    client = await SharonClient.connect(server.ws_url, encoding=encoding)
    await client.register(fresh_pseudonym(prefix), PASSWORD)
    return client


async def room_with(owner: SharonClient, *members: SharonClient, public: bool = True,
                    kind: str = "chat", name: str = "Night owls") -> str:
    """Create a room owned by ``owner`` and join every member to it; returns the room ID."""
    room_id = (await owner.create_room(kind, name, public=public))["room_id"]
    for member in members:
        if not public:
            await owner.invite(room_id, member.user_id)
        await member.join(room_id)
    return room_id


async def messages_until(client: SharonClient, count: int, timeout_s: float = 20.0) -> List[Dict[str, Any]]:
    """Collect pushed m.room.message events until ``count`` have arrived."""
    out: List[Dict[str, Any]] = []
    while len(out) < count:
        event = await client.next_event(timeout_s)
        if event["type"] == "m.room.message":
            out.append(event)
    return out


async def all_history(client: SharonClient, room_id: str, direction: str = "b",
                      limit: int = 50) -> List[Dict[str, Any]]:
    """Every event of a room, paging in ``direction``; returned oldest first."""
    events: List[Dict[str, Any]] = []
    cursor: Optional[int] = None
    while True:
        page = await client.history(room_id, dir=direction, from_pos=cursor, limit=limit)
        events.extend(page["events"])
        cursor = page["next"]
        if cursor is None:
            break
    return list(reversed(events)) if direction == "b" else events


def http(server: Any, method: str, path: str, body: Optional[bytes] = None,
         headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, Any]]:
    """A blocking HTTP call to the server; returns (status, JSON body)."""
    req = urllib.request.Request(server.http_url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
