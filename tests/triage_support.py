"""Helpers shared by the reports, triage and out-of-hours tests (no tests here)."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import attr

from tests.helpers import user
from tests.test_content_support import grant_admin


@attr.s(auto_attribs=True)
class Team:
    """A service with its admin, moderators, clinicians, peers and members (all live)."""

    service_id: str
    admin: Any
    mods: List[Any]
    clinicians: List[Any]
    peers: List[Any]
    members: List[Any]

    def everyone(self) -> List[Any]:
        return [self.admin, *self.mods, *self.clinicians, *self.peers, *self.members]

    async def close(self) -> None:
        for c in self.everyone():
            await c.close()


async def team(server: Any, *, mods: int = 1, clinicians: int = 0, peers: int = 0, members: int = 2,
               settings: Optional[Dict[str, Any]] = None) -> Team:
    """A new service with people in each role; every client has sent ``sync`` (gets pushes)."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    fields = {"settings": settings} if settings else {}
    service_id = (await admin.request("create_service", name="Night service", **fields))["service_id"]
    out = Team(service_id, admin, [], [], [], [])
    for count, role, bucket in ((mods, "moderator", out.mods), (clinicians, "clinician", out.clinicians),
                                (peers, "peer", out.peers), (members, "member", out.members)):
        for _ in range(count):
            person = await user(server, role)
            await admin.request("service_add_member", service_id=service_id, user_id=person.user_id, role=role)
            bucket.append(person)
    for c in out.everyone():
        await c.sync()
    return out


async def frame_op(client: Any, op: str, timeout_s: float = 15.0) -> Dict[str, Any]:
    """The next pushed frame with ``op`` (other pushed frames are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        frame = await client.next_frame(timeout_s=max(0.05, deadline - loop.time()))
        if frame.get("op") == op:
            return frame


async def pushed(client: Any) -> List[Dict[str, Any]]:
    """Every frame pushed to ``client`` so far: after a ping's reply, earlier pushes are queued."""
    await client.ping()
    out = []
    queue = client._frames
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def pushed_ops(client: Any) -> List[str]:
    """The ``op`` of every frame pushed to ``client`` so far (drained)."""
    return [f.get("op") for f in await pushed(client)]


async def drain(*clients: Any) -> None:
    """Forget every frame and event pushed so far."""
    for c in clients:
        await pushed(c)
        while not c._events.empty():
            c._events.get_nowait()
