"""Helpers for the staff-access, unmask and privacy tests (#5): services with staff, identities.

Identities are put into the running server's vault from the test process (the same SQLite
database and key file), the seeding path these tests control; once clinician invites exist
the stateful privacy test registers members through them instead.
"""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple

from protocol.identity import Identity, identity_values, nhs_check_digit
from sharon_server.config import Config
from sharon_server.storage.database import open_database
from sharon_server.vault import open_vault

__all__ = ["grant_admin", "service_with_staff", "make_identity", "put_identity", "invited_member", "values_of",
           "contains_any", "close_world", "in_world"]


def grant_admin(server: Any, pseudonym: str) -> None:
    """Make a server admin from the shell, as operators do."""
    extra = list(getattr(server, "args", None) or [])  # e.g. --database-url of a PostgreSQL server
    out = subprocess.run([sys.executable, "-m", "sharon_server", "admin", "--data-dir", str(server.data_dir),
                          *extra, "grant", pseudonym], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


async def service_with_staff(admin: Any, name: str, members: Iterable[Any] = (),
                             roles: Optional[Dict[str, Tuple[Any, ...]]] = None,
                             settings: Optional[Dict[str, Any]] = None) -> str:
    """A new service created by ``admin`` (a server admin) with members and staff by role."""
    service = (await admin.request("create_service", name=name,
                                   **({"settings": settings} if settings else {})))["service_id"]
    for member in members:
        await admin.request("service_add_member", service_id=service, user_id=member.user_id)
    for role, people in (roles or {}).items():
        for person in people:
            await admin.request("service_add_member", service_id=service, user_id=person.user_id, role=role)
    return service


def _nhs_number(rng: random.Random) -> str:
    while True:
        first = "".join(rng.choice("0123456789") for _ in range(9))
        check = nhs_check_digit(first)
        if check is not None:
            return first + str(check)


def make_identity(seed: int) -> Dict[str, Any]:
    """A distinctive identity record (values no protocol word, ID or pseudonym contains)."""
    rng = random.Random(seed)
    tag = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(8))
    return {
        "name": f"Qx{tag.title()} Realname",
        "date_of_birth": f"19{rng.randint(40, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        "nhs_number": _nhs_number(rng),
        "contact": {"email": f"qx.{tag}@example.org", "phone": f"+44 7700 9{rng.randint(10000, 99999)}",
                    "address": f"{rng.randint(2, 99)} Qx{tag} Lane"},
        "care_team": f"Qx{tag} Community Team",
        "emergency_contact": {"name": f"Qx{tag} Kin", "phone": f"+44 7700 8{rng.randint(10000, 99999)}"},
    }


def values_of(identity: Dict[str, Any]) -> List[str]:
    """Every value of an identity record (as the vault normalises it)."""
    return identity_values(Identity.parse(identity))


def contains_any(frame: Any, values: Iterable[str]) -> List[str]:
    """The identity values found anywhere in ``frame`` (keys and values, any depth)."""
    text = repr(frame)
    return [v for v in values if v and v in text]


async def put_identity(server: Any, user_id: str, identity: Dict[str, Any]) -> None:
    """Store ``identity`` for ``user_id`` in the running server's vault (SQLite servers)."""
    db = await open_database(f"sqlite+aiosqlite:///{server.data_dir / 'sharon.db'}")
    try:
        vault = await open_vault(Config(data_dir=server.data_dir), db, environ={})
        await vault.put(user_id, Identity.parse(identity))
    finally:
        await db.close()


async def invited_member(server: Any, clinician: Any, service: str, identity: Dict[str, Any],
                         prefix: str = "member") -> Any:
    """A new member registered through ``clinician``'s invite carrying ``identity`` (any backend)."""
    from clients.client import SharonClient
    from tests.helpers import PASSWORD, fresh_pseudonym

    invite = await clinician.request("invite_create", service_id=service, role="member", identity=identity)
    client = await SharonClient.connect(server.ws_url)
    result = await client.request("register", pseudonym=fresh_pseudonym(prefix), password=PASSWORD,
                                  invite_code=invite["code"])
    client.user_id, client.pseudonym, client.token = result["user_id"], result["pseudonym"], result.get("token")
    return client


async def close_world(w: Dict[str, Any]) -> None:
    """Close every client in a test's world of users (the dict ``_world`` builds)."""
    for value in w.values():
        if hasattr(value, "close"):
            await value.close()


def in_world(run: Any, make_world: Any, body: Any, *world_args: Any, **world_kw: Any) -> None:
    """Run ``body(w)`` as a test's scenario on a fresh ``make_world(*world_args, **world_kw)``,
    closing its connections afterwards (the setup and teardown of the staff and unmask tests)."""
    async def scenario() -> None:
        w = await make_world(*world_args, **world_kw)
        await body(w)
        await close_world(w)

    run(scenario(), timeout_s=60)
