"""Shared set-up of the moderation tests: one service with members and two moderators."""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional

import attr

from clients.client import SharonClient
from tests.helpers import user
from tests.test_content_support import grant_admin

_txns = itertools.count(1)


def txn() -> str:
    """A transaction ID unique within the test process."""
    return f"mod-txn-{next(_txns)}"


@attr.s(auto_attribs=True)
class Cast:
    """Who is in the service: its admin, two moderators, members, and a chat room."""

    admin: SharonClient
    service: str
    mods: List[SharonClient]
    members: List[SharonClient]
    room: str

    async def close(self) -> None:
        for c in [self.admin, *self.mods, *self.members]:
            await c.close()


def in_cast(run: Any, body: Any, server: Any, *cast_args: Any, **cast_kw: Any) -> None:
    """Run ``body(c)`` as a test's scenario on a fresh ``cast(server, ...)``, closing its
    connections afterwards (the setup and teardown the moderation tests share)."""
    async def scenario() -> None:
        c = await cast(server, *cast_args, **cast_kw)
        await body(c)
        await c.close()

    run(scenario(), timeout_s=60)


async def cast(server: Any, settings: Optional[Dict[str, Any]] = None, members: int = 2,
               kind: str = "chat") -> Cast:
    """A service (with ``settings``), two moderators, ``members`` members, all joined to one
    public room of ``kind`` and live (synced)."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    service = (await admin.request("create_service", name="Perinatal",
                                   **({"settings": settings} if settings else {})))["service_id"]
    mods = [await user(server, "mod") for _ in range(2)]
    people = [await user(server, "member") for _ in range(members)]
    for m in mods:
        await admin.request("service_add_member", service_id=service, user_id=m.user_id, role="moderator")
    for p in people:
        await admin.request("service_add_member", service_id=service, user_id=p.user_id)
    room = (await mods[0].request("create_room", kind=kind, name="Evening chat", public=True,
                                  service_id=service))["room_id"]
    for c in [mods[1], *people]:
        await c.join(room)
    for c in [*mods, *people]:
        await c.sync()
    return Cast(admin, service, mods, people, room)


async def push(client: SharonClient, op: str, timeout_s: float = 10.0) -> Dict[str, Any]:
    """The next pushed frame with this ``op`` (other pushes before it are skipped)."""
    while True:
        frame = await client.next_frame(timeout_s)
        if frame.get("op") == op:
            return frame


async def next_of(client: SharonClient, etype: str, timeout_s: float = 10.0) -> Dict[str, Any]:
    """The next live event of ``etype`` (other events before it are skipped)."""
    while True:
        event = await client.next_event(timeout_s)
        if event["type"] == etype:
            return event
