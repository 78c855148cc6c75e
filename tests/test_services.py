"""Services (spaces): admins create them, membership is the key to their rooms, settings bite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from protocol.errors import BadField, Forbidden, TooLarge
from tests.helpers import user

pytestmark = pytest.mark.integration


def grant_admin(server, pseudonym: str) -> str:
    """Run ``sharon-server admin grant`` against the running server's data directory."""
    out = subprocess.run([sys.executable, "-m", "sharon_server", "admin", "--data-dir", str(server.data_dir),
                          "grant", pseudonym], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def service_with(server, settings=None, members=()):
    """An admin, a new service, and ``members`` added to it; returns (admin, service_id)."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    result = await admin.request("create_service", name="Perinatal", topic="Support for new parents",
                                 **({"settings": settings} if settings else {}))
    for member in members:
        await admin.request("service_add_member", service_id=result["service_id"], user_id=member.user_id)
    return admin, result["service_id"]


def test_only_admins_create_services_and_the_shell_grants_admin(server, run):
    async def scenario():
        alice = await user(server, "alice")
        with pytest.raises(Forbidden):
            await alice.request("create_service", name="Nope")
        assert "is now a server admin" in grant_admin(server, alice.pseudonym)
        assert "was already" in grant_admin(server, alice.pseudonym)
        created = await alice.request("create_service", name="Carers", settings={"trending": False})
        assert created["settings"]["trending"] is False
        services = (await alice.request("services"))["services"]
        assert [s["name"] for s in services] == ["Carers"] and services[0]["role"] == "admin"
        with pytest.raises(BadField) as exc:
            await alice.request("create_service", name="Bad", settings={"char_limits": {"chat": 0}})
        assert exc.value.field == "settings.char_limits.chat"
        await alice.close()

    run(scenario())


def test_membership_of_a_service_is_the_key_to_its_rooms(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        outsider = await user(server, "outsider")
        admin, service = await service_with(server, members=(alice, bob))
        assert [s["service_id"] for s in (await alice.request("services"))["services"]] == [service]
        assert (await outsider.request("services"))["services"] == []
        room = (await alice.request("create_room", kind="chat", name="Night feeds", public=True,
                                    service_id=service))["room_id"]
        listed = (await bob.request("service_rooms", service_id=service))["rooms"]
        assert [(r["room_id"], r["membership"]) for r in listed] == [(room, None)]
        await bob.join(room)
        with pytest.raises(Forbidden):
            await outsider.join(room)  # public, but not for non-members of the service
        with pytest.raises(Forbidden):
            await outsider.request("service_rooms", service_id=service)
        with pytest.raises(Forbidden):
            await outsider.request("create_room", kind="chat", name="Sneaky", service_id=service)
        with pytest.raises(Forbidden):
            await alice.invite(room, outsider.user_id)
        with pytest.raises(Forbidden):
            await bob.request("service_add_member", service_id=service, user_id=outsider.user_id)
        for c in (alice, bob, outsider, admin):
            await c.close()

    run(scenario())


def test_service_settings_set_kinds_and_character_limits(server, run):
    async def scenario():
        alice = await user(server, "alice")
        admin, service = await service_with(
            server, settings={"kinds": ["chat", "blog"], "char_limits": {"chat": 100}}, members=(alice,))
        with pytest.raises(BadField) as exc:
            await alice.request("create_room", kind="forum", name="F", service_id=service)
        assert exc.value.field == "kind"
        room = (await alice.request("create_room", kind="chat", name="C", service_id=service))["room_id"]
        await alice.send(room, "x" * 100)
        with pytest.raises(TooLarge) as exc:
            await alice.send(room, "x" * 101)
        assert exc.value.field == "body" and "100" in exc.value.reason
        changed = await admin.request("service_settings", service_id=service, settings={"char_limits": {"chat": 200}})
        assert changed["settings"]["char_limits"]["chat"] == 200 and changed["settings"]["kinds"] == ["chat", "blog"]
        await alice.send(room, "x" * 150)
        with pytest.raises(Forbidden):
            await alice.request("service_settings", service_id=service, settings={"trending": False})
        await alice.close(); await admin.close()

    run(scenario())


def test_admin_and_service_changes_are_in_the_verified_audit_log(server, run):
    import json

    async def scenario():
        alice = await user(server, "alice")
        admin, service = await service_with(server, members=(alice,))
        await admin.request("service_settings", service_id=service, settings={"trending": False})
        await alice.close(); await admin.close()
        return admin.user_id, alice.user_id, service

    admin_id, alice_id, service = run(scenario())

    def audit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sharon_server", "audit", *args, "--data-dir",
                               str(server.data_dir)], capture_output=True, text=True, timeout=60)

    exported = audit("export")
    assert exported.returncode == 0, exported.stderr
    entries = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    actions = [(e["actor"], e["action"], e["member"], e["service"]) for e in entries]
    assert ("shell", "admin.grant", admin_id, None) in actions
    assert (admin_id, "service.create", None, service) in actions
    assert (admin_id, "service.add_member", alice_id, service) in actions
    assert (admin_id, "service.settings", None, service) in actions
    verified = audit("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
