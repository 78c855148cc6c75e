"""Helpers shared by the content tests (no tests here): services with members and staff."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any, Dict, Sequence, Tuple

from tests.helpers import user

_txn = itertools.count(1)


def txn() -> str:
    """A fresh transaction ID."""
    return f"t{next(_txn)}"


def grant_admin(server: Any, pseudonym: str) -> None:
    """Make a server admin with ``sharon-server admin grant`` on the server's data directory."""
    db = list(server.args[server.args.index("--database-url"):][:2]) if "--database-url" in server.args else []
    out = subprocess.run([sys.executable, "-m", "sharon_server", "admin", "--data-dir", str(server.data_dir), *db,
                          "grant", pseudonym], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


async def service(server: Any, members: Sequence[Any] = (), staff: Sequence[Any] = (),
                  settings: Dict[str, Any] = None, name: str = "Perinatal") -> Tuple[Any, str]:
    """A new service by a fresh server admin with ``members`` and ``staff`` (moderators) added."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    fields = {"settings": settings} if settings else {}
    service_id = (await admin.request("create_service", name=name, **fields))["service_id"]
    for m in members:
        await admin.request("service_add_member", service_id=service_id, user_id=m.user_id)
    for s in staff:
        await admin.request("service_add_member", service_id=service_id, user_id=s.user_id, role="moderator")
    return admin, service_id


async def room_in(owner: Any, service_id: str, kind: str, *joiners: Any, name: str = "Room",
                  public: bool = True) -> str:
    """A room of ``kind`` in the service, created by ``owner`` and joined by ``joiners``."""
    room_id = (await owner.request("create_room", kind=kind, name=name, public=public,
                                   service_id=service_id))["room_id"]
    for j in joiners:
        await j.join(room_id)
    return room_id


async def close(*clients: Any) -> None:
    """Close every client."""
    for c in clients:
        await c.close()
