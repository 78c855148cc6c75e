"""Clinician invites, redemption at sign-up, discharge, against the real server (#5)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any, Dict, List

import pytest

from clients.client import SharonClient
from protocol.errors import (
    BadField, Forbidden, InviteCodeExpired, InviteCodeInvalid, InviteCodeRevoked, InviteCodeUsed,
    InviteNotFound, InviteNotPending, MissingField, NotFound, PseudonymRejected, PseudonymTaken, WeakPassword,
)
from protocol.identity import Identity, identity_values, nhs_check_digit
from tests.conftest import module_server
from tests.helpers import PASSWORD, fresh_pseudonym, http, user
from tests.test_content_support import grant_admin

pytestmark = pytest.mark.integration

_n = iter(range(1, 10_000))


def identity(i: int = 0) -> Dict[str, Any]:
    """A distinctive identity record (values that cannot appear anywhere by chance)."""
    i = i or next(_n)
    prefix = f"{(i * 7919 + 987654321) % 10**9:09d}"
    while nhs_check_digit(prefix) is None:
        prefix = f"{(int(prefix) + 1) % 10**9:09d}"
    return {"name": f"Wilhelmina Thistlewood-{i:03d}", "date_of_birth": f"1987-0{1 + i % 9}-2{i % 8}",
            "nhs_number": prefix + str(nhs_check_digit(prefix)),
            "contact": {"phone": f"+44 7700 8{i:05d}", "email": f"w.thistlewood{i}@example.net"},
            "care_team": f"Bramblecote Perinatal Team {i}"}


def needles(record: Dict[str, Any]) -> List[str]:
    return identity_values(Identity.parse(record))


def leaks(frames: Any, record: Dict[str, Any]) -> List[str]:
    text = json.dumps(frames, ensure_ascii=False, default=repr)
    return [v for v in needles(record) if v in text]


iserver = module_server("invites")


_admins: Dict[str, str] = {}


async def server_admin(server: Any) -> SharonClient:
    """A server admin, granted from the shell once per server and logged in again after."""
    key = str(server.data_dir)
    if key not in _admins:
        admin = await user(server, "keeper")
        grant_admin(server, admin.pseudonym)
        _admins[key] = admin.pseudonym
        return admin
    admin = await SharonClient.connect(server.ws_url)
    await admin.login(_admins[key], PASSWORD)
    return admin


async def world(server: Any) -> Dict[str, Any]:
    """Two services; a clinician, a moderator and a member of A, a clinician of B."""
    w: Dict[str, Any] = {"admin": await server_admin(server)}
    w["a"] = (await w["admin"].request("create_service", name="Perinatal"))["service_id"]
    w["b"] = (await w["admin"].request("create_service", name="Eating disorders"))["service_id"]
    for name, service, role in (("clin", "a", "clinician"), ("mod", "a", "moderator"), ("member", "a", "member"),
                                ("clinb", "b", "clinician")):
        w[name] = await user(server, name)
        await w["admin"].request("service_add_member", service_id=w[service], user_id=w[name].user_id, role=role)
    return w


async def close(w: Dict[str, Any], *more: Any) -> None:
    for c in [v for v in w.values() if isinstance(v, SharonClient)] + list(more):
        await c.close()


async def vault_get(server: Any, key: str) -> Any:
    """Read one vault record straight from the running server's SQLite database and key file."""
    from sharon_server.storage.database import open_database
    from sharon_server.vault import IdentityVault, KeyFile, key_file_path

    db = await open_database(f"sqlite+aiosqlite:///{server.data_dir / 'sharon.db'}")
    try:
        return await IdentityVault(db, KeyFile(key_file_path(server.data_dir))).get(key)
    finally:
        await db.close()


def audit(server: Any, action: str) -> List[Dict[str, Any]]:
    """The audit log's entries with ``action``, exported with ``sharon-server audit export``."""
    out = subprocess.run([sys.executable, "-m", "sharon_server", "audit", "--data-dir", str(server.data_dir),
                          "export", "--action", action], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


async def redeem(server: Any, code: str, pseudonym: str = "") -> SharonClient:
    client = await SharonClient.connect(server.ws_url)
    try:
        result = await client.request("register", pseudonym=pseudonym or fresh_pseudonym("newcomer"),
                                      password=PASSWORD, invite_code=code)
    except BaseException:
        await client.close()
        raise
    client.user_id, client.pseudonym = result["user_id"], result["pseudonym"]
    return client


def test_a_clinician_invites_and_the_person_signs_up_with_their_own_pseudonym(iserver, run):
    async def scenario():
        w = await world(iserver)
        record = identity()
        await w["member"].sync()
        created = await w["clin"].request("invite_create", service_id=w["a"], role="carer", identity=record,
                                          note="first contact")
        assert created["code"].startswith("inv_") and len(created["code"]) == 36
        assert created["link"].endswith("#" + created["code"]) and created["expires_ts"] > 0
        assert not leaks(created, record)
        assert await vault_get(iserver, f"invite:{created['invite_id']}") == Identity.parse(record)
        newcomer = await redeem(iserver, created["code"], "morning-lark")
        assert newcomer.pseudonym == "morning-lark"
        # the identity moved to the new member's user ID in the vault
        assert await vault_get(iserver, newcomer.user_id) == Identity.parse(record)
        assert await vault_get(iserver, f"invite:{created['invite_id']}") is None
        services = (await newcomer.request("services"))["services"]
        assert [(s["service_id"], s["role"]) for s in services] == [(w["a"], "carer")]
        listed = (await w["clin"].request("invite_list", service_id=w["a"]))["invites"]
        mine = [i for i in listed if i["invite_id"] == created["invite_id"]]
        assert mine and mine[0]["status"] == "used" and mine[0]["used_by"] == newcomer.user_id
        assert mine[0]["created_by_pseudonym"] == w["clin"].pseudonym and "code" not in mine[0]
        # one code, one account
        with pytest.raises(InviteCodeUsed) as exc:
            await redeem(iserver, created["code"])
        assert exc.value.field == "invite_code"
        # what the new member's peers see: the pseudonym and the opaque ID, never the identity
        pushed = []
        while True:
            event = await w["member"].next_event()
            pushed.append(event)
            if event.get("state_key") == newcomer.user_id and event["content"].get("membership") == "join":
                break
        history = (await w["member"].history(w["a"], limit=100))["events"]
        assert not leaks([pushed, history, listed, services], record)
        role_events = [e for e in history
                       if e["type"] == "ps.service.role" and e["state_key"] == "_" + newcomer.user_id]
        assert role_events[-1]["sender"] == w["clin"].user_id  # the inviting clinician, not the steward
        created_entry = [e for e in audit(iserver, "invite.create")
                         if e["details"]["invite_id"] == created["invite_id"]]
        redeemed = [e for e in audit(iserver, "invite.redeem") if e["details"]["invite_id"] == created["invite_id"]]
        assert created_entry[0]["actor"] == w["clin"].user_id and redeemed[0]["actor"] == newcomer.user_id
        assert not leaks([created_entry, redeemed], record) and created["code"] not in json.dumps(created_entry)
        await close(w, newcomer)

    run(scenario())


def test_role_boundaries_for_invites(iserver, run):
    async def scenario():
        w = await world(iserver)
        record = identity()
        for who in ("clinb", "mod", "member"):  # other service's clinician, a moderator, a member
            with pytest.raises(Forbidden):
                await w[who].request("invite_create", service_id=w["a"], role="member", identity=record)
            with pytest.raises(Forbidden):
                await w[who].request("invite_list", service_id=w["a"])
        created = await w["clin"].request("invite_create", service_id=w["a"], identity=record)
        with pytest.raises(InviteNotFound):
            await w["clinb"].request("invite_revoke", invite_id=created["invite_id"])
        with pytest.raises(BadField) as exc:
            await w["clin"].request("invite_create", service_id=w["a"], role="clinician", identity=record)
        assert exc.value.field == "role"
        bad = dict(record, nhs_number=record["nhs_number"][:9] + str((int(record["nhs_number"][9]) + 1) % 10))
        with pytest.raises(BadField) as exc:
            await w["clin"].request("invite_create", service_id=w["a"], identity=bad)
        assert exc.value.field == "identity.nhs_number"
        with pytest.raises(MissingField) as exc:
            await w["clin"].request("invite_create", service_id=w["a"])
        assert exc.value.field == "identity"
        # the server admin (not a member) may invite; so may the service's admin role
        assert (await w["admin"].request("invite_create", service_id=w["b"], identity=identity()))["code"]
        # email and phone may be given at the top level; they are validated like the vault's contact
        flat = {k: v for k, v in identity().items() if k != "contact"}
        assert (await w["clin"].request("invite_create", service_id=w["a"],
                                        identity=dict(flat, email="x.y@example.net", phone="+44 7700 900111")))["code"]
        with pytest.raises(BadField) as exc:
            await w["clin"].request("invite_create", service_id=w["a"], identity=dict(flat, email="not an email"))
        assert exc.value.field == "identity.contact.email"
        await close(w)

    run(scenario())


def test_revoked_malformed_and_unknown_codes_and_http_registration(iserver, run):
    async def scenario():
        w = await world(iserver)
        created = await w["clin"].request("invite_create", service_id=w["a"], identity=identity())
        revoked = await w["clin"].request("invite_revoke", invite_id=created["invite_id"])
        assert revoked["status"] == "revoked"
        with pytest.raises(InviteNotPending):
            await w["clin"].request("invite_revoke", invite_id=created["invite_id"])
        with pytest.raises(InviteCodeRevoked) as exc:
            await redeem(iserver, created["code"])
        assert exc.value.field == "invite_code"
        for code in ("not-a-code", "inv_" + "A" * 32):
            with pytest.raises(InviteCodeInvalid) as exc:
                await redeem(iserver, code)
            assert exc.value.field == "invite_code"
        with pytest.raises(InviteNotFound):
            await w["clin"].request("invite_revoke", invite_id="iv_nothing")
        # POST /api/v1/register takes the code too
        record = identity()
        other = await w["clin"].request("invite_create", service_id=w["a"], identity=record)
        body = {"pseudonym": fresh_pseudonym("http"), "password": PASSWORD, "invite_code": other["code"]}
        status, reply = http(iserver, "POST", "/api/v1/register", json.dumps(body).encode(),
                             {"content-type": "application/json"})
        assert status == 200 and reply["user_id"] and not leaks(reply, record)
        status, reply = http(iserver, "POST", "/api/v1/register", json.dumps(body).encode(),
                             {"content-type": "application/json"})
        assert status == 400 and reply["code"] == "invite_code_used" and reply["field"] == "invite_code"
        listed = (await w["clin"].request("invite_list", service_id=w["a"]))["invites"]
        assert [i["status"] for i in listed][:2] == ["used", "revoked"]
        await close(w)

    run(scenario())


def test_two_concurrent_redemptions_make_one_account(iserver, run):
    async def scenario():
        w = await world(iserver)
        created = await w["clin"].request("invite_create", service_id=w["a"], identity=identity())
        clients = [await SharonClient.connect(iserver.ws_url) for _ in range(4)]
        results = await asyncio.gather(*[
            c.request("register", pseudonym=fresh_pseudonym("racer"), password=PASSWORD, invite_code=created["code"])
            for c in clients], return_exceptions=True)
        ok = [r for r in results if isinstance(r, dict)]
        assert len(ok) == 1, results
        assert all(isinstance(r, InviteCodeUsed) for r in results if not isinstance(r, dict)), results
        members = (await w["admin"].request("service_rooms", service_id=w["a"]))  # still serving
        assert members is not None
        await close(w, *clients)

    run(scenario())


def test_the_pseudonym_may_not_carry_the_invited_persons_name_or_birth_date(iserver, run):
    async def scenario():
        w = await world(iserver)
        record = identity()
        created = await w["clin"].request("invite_create", service_id=w["a"], identity=record)
        first, last = record["name"].split(" ")[0], record["name"].split(" ")[1].split("-")[0]
        year = record["date_of_birth"][:4]
        for pseudonym in (first.lower(), f"the-{last}", f"heron{year}"):
            with pytest.raises(PseudonymRejected) as exc:
                await redeem(iserver, created["code"], pseudonym)
            assert exc.value.field == "pseudonym" and not leaks(exc.value.reason, record)
        with pytest.raises(PseudonymTaken):  # fails after the claim: the claim is released
            await redeem(iserver, created["code"], w["member"].pseudonym)
        with pytest.raises(WeakPassword):
            c = await SharonClient.connect(iserver.ws_url)
            try:
                await c.request("register", pseudonym="heron-at-noon", password="short", invite_code=created["code"])
            finally:
                await c.close()
        newcomer = await redeem(iserver, created["code"], "heron-at-dusk")  # the code survived the refusals
        assert newcomer.pseudonym == "heron-at-dusk"
        await close(w, newcomer)

    run(scenario())


def test_discharge_closes_access_or_keeps_a_peer_member_and_is_recorded(iserver, run):
    async def scenario():
        w = await world(iserver)
        admin, a = w["admin"], w["a"]
        room = (await w["clin"].request("create_room", kind="chat", name="Group", public=True, service_id=a))["room_id"]
        witness = await user(iserver, "witness")
        await admin.request("service_add_member", service_id=a, user_id=witness.user_id)
        for who in (w["member"], witness):
            await who.join(room)
        await w["member"].request("send", room_id=room, txn_id="d1", body="hello from me")
        for who in ("clinb", "mod", "member"):
            with pytest.raises(Forbidden):
                await w[who].request("service_discharge", service_id=a, user_id=w["member"].user_id, reason="r")
        with pytest.raises(BadField):
            await w["clin"].request("service_discharge", service_id=a, user_id=w["mod"].user_id, reason="r")
        with pytest.raises(NotFound):
            await w["clin"].request("service_discharge", service_id=a, user_id=w["clinb"].user_id, reason="r")
        await w["member"].sync()
        done = await w["clin"].request("service_discharge", service_id=a, user_id=w["member"].user_id,
                                       reason="recovered, moving to GP care")
        assert done["policy"] == "close" and done["rooms_left"] == 1
        notice = await w["member"].next_frame()
        assert notice["op"] == "service_discharged" and notice["service_id"] == a
        assert "discharged" in notice["message"] and "recovered" not in notice["message"]
        assert (await w["member"].request("services"))["services"] == []
        later = (await w["member"].request("discharge_notices"))["notices"]  # for when they were offline
        assert later == [{k: notice[k] for k in ("service_id", "policy", "ts", "message")}]
        with pytest.raises(Forbidden):
            await w["member"].join(room)
        history = (await witness.history(room, limit=50))["events"]
        assert any(e["content"].get("body") == "hello from me" for e in history)  # their posts stay
        # keep: the member stays, as a peer member
        await admin.request("service_settings", service_id=a, settings={"discharge_policy": "keep"})
        record = identity()
        invite = await w["clin"].request("invite_create", service_id=a, identity=record)
        other = await redeem(iserver, invite["code"])
        assert (await vault_get(iserver, other.user_id)).care_team == record["care_team"]
        kept = await w["clin"].request("service_discharge", service_id=a, user_id=other.user_id, reason="stable")
        assert kept["policy"] == "keep" and kept["rooms_left"] == 0
        assert (await vault_get(iserver, other.user_id)).care_team == ""  # no care-team link any more
        assert (await other.request("discharge_notices"))["notices"][0]["policy"] == "keep"
        assert [s["service_id"] for s in (await other.request("services"))["services"]] == [a]
        with pytest.raises(BadField) as exc:
            await admin.request("service_settings", service_id=a, settings={"discharge_policy": "archive"})
        assert exc.value.field == "settings.discharge_policy"
        # the audit log has who did it
        entries = audit(iserver, "service.discharge")
        mine = [e for e in entries if e["member"] == w["member"].user_id]
        assert len(mine) == 1 and mine[0]["actor"] == w["clin"].user_id and mine[0]["service"] == a
        assert mine[0]["details"]["policy"] == "close" and mine[0]["details"]["reason"].startswith("recovered")
        await close(w, other, witness)

    run(scenario())


def test_expired_codes_and_the_operators_block_list(server_factory, tmp_path, run):
    blocklist = tmp_path / "blocked.txt"
    blocklist.write_text("# words this server refuses\nmarmalade\n\n  zork  # short: whole words only\n")
    server = server_factory(env={"SHARON_INVITE_TTL_MS": "0", "SHARON_PSEUDONYM_BLOCKLIST": str(blocklist)})

    async def scenario():
        w = await world(server)
        created = await w["clin"].request("invite_create", service_id=w["a"], identity=identity())
        with pytest.raises(InviteCodeExpired) as exc:
            await redeem(server, created["code"])
        assert exc.value.field == "invite_code"
        for pseudonym in ("Marm4lade-fan", "the.zork", "zork"):
            client = await SharonClient.connect(server.ws_url)
            with pytest.raises(PseudonymRejected) as exc:
                await client.register(pseudonym, PASSWORD)
            assert "this server does not allow" in exc.value.reason
            await client.close()
        ok = await user(server, "zorkish")  # a short entry is a whole word, not a substring
        await close(w, ok)

    run(scenario())


def test_redemption_on_postgresql(pg_server, run):
    async def scenario():
        w = await world(pg_server)
        record = identity()
        created = await w["clin"].request("invite_create", service_id=w["a"], identity=record)
        clients = [await SharonClient.connect(pg_server.ws_url) for _ in range(2)]
        results = await asyncio.gather(*[
            c.request("register", pseudonym=fresh_pseudonym("pg"), password=PASSWORD, invite_code=created["code"])
            for c in clients], return_exceptions=True)
        assert len([r for r in results if isinstance(r, dict)]) == 1, results
        winner = next(r for r in results if isinstance(r, dict))
        assert not leaks(results, record)
        listed = (await w["clin"].request("invite_list", service_id=w["a"]))["invites"]
        assert listed[0]["status"] == "used" and listed[0]["used_by"] == winner["user_id"]
        done = await w["clin"].request("service_discharge", service_id=w["a"], user_id=winner["user_id"], reason="x")
        assert done["policy"] == "close"
        await close(w, *clients)

    run(scenario())


def test_the_cli_invites_registers_with_the_code_and_discharges(iserver, tmp_path):
    from tests.test_cli import User

    admin = User(iserver, tmp_path / "admin", "keeper").register()
    clin = User(iserver, tmp_path / "clin", "clin").register()
    grant_admin(iserver, admin.pseudonym)
    service = admin.ok("create-service", "Perinatal").strip()
    admin.ok("service-add", service, clin.user_id, "--role", "clinician")
    record = identity()
    created = clin.run("invites", "create", service, "--identity", "-", "--role", "carer", "--note", "via GP",
                       stdin=json.dumps(record))
    assert created.returncode == 0, created.stderr
    assert "will NOT be shown again" in created.stderr and not leaks([created.stdout, created.stderr], record)
    code = next(line.split(": ", 1)[1] for line in created.stdout.splitlines() if line.startswith("code: "))
    link = next(line.split(": ", 1)[1] for line in created.stdout.splitlines() if line.startswith("link: "))
    newcomer = User(iserver, tmp_path / "new", "lark")
    newcomer.user_id = newcomer.ok("register", newcomer.pseudonym, "--invite", link).strip()
    assert "role=carer" in newcomer.ok("services")
    again = User(iserver, tmp_path / "again", "lark").run("register", fresh_pseudonym("lark"), "--invite", code)
    assert again.returncode == 1 and "invite_code_used" in again.stderr and "invite_code" in again.stderr
    listed = clin.ok("invites", "list", service)
    assert " used " in listed and "via GP" in listed and not leaks(listed, record)
    missing = clin.run("invites", "create", service)
    assert missing.returncode == 1 and "--identity" in missing.stderr
    out = clin.ok("discharge", service, newcomer.user_id, "--reason", "moved away")
    assert "discharged" in out and "left the service" in out
    assert newcomer.ok("services").strip() == ""
