"""Clinician invites, redemption at sign-up, discharge, and the operator's pseudonym block list.

An invite is a row of ``service_invites`` (no identity, the code only as its SHA-256) plus
the invited person's identity in the encrypted vault under ``invite:<invite_id>``. Redeeming
a code at registration claims the row with one conditional UPDATE (``pending`` ->
``claimed``), so of two concurrent redemptions exactly one wins; the account is then created
with the member's own pseudonym (screened against the identity's name and birth date), the
identity moves to the vault under the new user ID, the member joins the service with the
invited role and the row becomes ``used``. If account creation fails after the claim (the
pseudonym was taken meanwhile), the claim is released and the code stays usable.

Publishes ``ctx.extras["invites"]`` with ``discharges(service_id, user_id)`` (the records,
for staff views) and ``sweep()``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional, Tuple

import attr
import sqlalchemy as sa
from twisted.logger import Logger

from protocol import invites as P
from protocol import spaces as S
from protocol.b64 import encode_b64url
from protocol.errors import (
    BadField, Forbidden, InviteCodeExpired, InviteCodeInvalid, InviteCodeRevoked, InviteCodeUsed,
    InviteNotFound, InviteNotPending, NotFound,
)
from protocol.identity import Identity
from sharon_server.accounts import read_blocklist
from sharon_server.ops import register_handlers
from sharon_server.storage.schema_invites import service_discharges, service_invites

__all__ = ["install", "vault_key"]

log = Logger(namespace="sharon.invites")

t = service_invites
SWEEP_BATCH = 200
"""Expired invites whose vault records are removed per sweep."""


def vault_key(invite_id: str) -> str:
    """The vault key of a pending invite's identity (never a user ID: it has no '@')."""
    return f"invite:{invite_id}"


def _hash(code: str) -> bytes:
    return hashlib.sha256(code.encode("ascii")).digest()


def _vault_shape(record: Dict[str, Any]) -> Dict[str, Any]:
    """Accept ``email``/``phone`` at the top level too (as clinicians write them): the vault
    record keeps them under ``contact``."""
    if "email" not in record and "phone" not in record:
        return record
    out = {k: v for k, v in record.items() if k not in ("email", "phone")}
    contact = out.get("contact") or {}
    contact = dict(contact) if isinstance(contact, dict) else contact
    if isinstance(contact, dict):
        for key in ("email", "phone"):
            if key in record:
                contact.setdefault(key, record[key])
    out["contact"] = contact
    return out


def install(ctx: Any) -> None:
    """Register the invite and discharge ops and the register-with-invite path."""
    rooms, services, accounts, db = ctx.rooms, ctx.services, ctx.accounts, ctx.db
    if services is None:
        return
    if ctx.config.pseudonym_blocklist:
        accounts.screen.set_extra(read_blocklist(ctx.config.pseudonym_blocklist))

    def spaces() -> Dict[str, Any]:
        return ctx.extras["spaces"]

    def ttl_ms() -> int:
        return int(ctx.config.invite_ttl_ms)

    async def audit(actor: str, action: str, **fields: Any) -> None:
        if ctx.audit is not None:
            await ctx.audit.append(actor, action, **fields)

    def require_vault() -> Any:
        if ctx.vault is None:
            raise Forbidden("this server has no identity vault, so it cannot hold invites")
        return ctx.vault

    async def require_inviter(service_id: str, user_id: str, what: str) -> None:
        services.require_service(service_id)
        await services.refresh_admins()
        if services.is_admin(user_id):
            return
        if services.role(service_id, user_id) not in P.INVITER_ROLES:
            raise Forbidden(f"only clinicians and admins of this service can {what}", "service_id")

    # -- storage ---------------------------------------------------------------------------
    async def row_by(column: Any, value: Any) -> Optional[Dict[str, Any]]:
        async with db.read_engine.connect() as conn:
            row = (await conn.execute(sa.select(*t.c).where(column == value))).first()
        return dict(row._mapping) if row is not None else None

    async def transition(invite_id: str, frm: str, **values: Any) -> bool:
        async with db.engine.begin() as conn:
            result = await conn.execute(t.update().where(t.c.invite_id == invite_id, t.c.status == frm)
                                        .values(**values))
        return result.rowcount == 1

    async def sweep() -> int:
        """Mark overdue pending invites expired and delete their vault records (bounded)."""
        now = ctx.now_ms()
        async with db.read_engine.connect() as conn:
            ids = [r[0] for r in await conn.execute(
                sa.select(t.c.invite_id).where(t.c.status == "pending", t.c.expires_ts <= now)
                .limit(SWEEP_BATCH))]
        done = 0
        for invite_id in ids:
            if await transition(invite_id, "pending", status="expired", closed_ts=now):
                if ctx.vault is not None:
                    await ctx.vault.delete(vault_key(invite_id))
                done += 1
        if done:
            log.info("invites.expired", count=done)
        return done

    def status_of(row: Dict[str, Any]) -> str:
        if row["status"] == "pending" and row["expires_ts"] <= ctx.now_ms():
            return "expired"
        return row["status"]

    # -- ops -------------------------------------------------------------------------------
    async def invite_create(conn: Any, req: P.InviteCreate) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        await require_inviter(service_id, session.user_id, "invite people into it")
        identity = Identity.parse(_vault_shape(req.identity), ctx.now_ms())
        vault = require_vault()
        await sweep()
        invite_id = "iv_" + encode_b64url(os.urandom(12))
        code = P.CODE_PREFIX + encode_b64url(os.urandom(24))
        now = ctx.now_ms()
        expires = now + ttl_ms()
        await vault.put(vault_key(invite_id), identity)
        async with db.engine.begin() as c:
            await c.execute(t.insert().values(
                invite_id=invite_id, service_id=service_id, role=req.role, code_hash=_hash(code), note=req.note,
                created_by=session.user_id, created_ts=now, expires_ts=expires, status="pending"))
        log.info("invite.created", invite_id=invite_id, service_id=service_id, role=req.role)
        await audit(session.user_id, "invite.create", service=service_id,
                    details={"invite_id": invite_id, "role": req.role, "expires_ts": expires})
        return {"invite_id": invite_id, "code": code, "link": P.invite_link(ctx.config.server_name, code),
                "role": req.role, "expires_ts": expires}

    def listed(row: Dict[str, Any]) -> Dict[str, Any]:
        return {"invite_id": row["invite_id"], "role": row["role"], "status": status_of(row),
                "note": row["note"], "created_by": row["created_by"],
                "created_by_pseudonym": accounts.pseudonym_of(row["created_by"]) or "",
                "created_ts": row["created_ts"], "expires_ts": row["expires_ts"],
                "used_by": row["used_by"], "closed_ts": row["closed_ts"]}

    async def invite_list(conn: Any, req: P.InviteList) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        await require_inviter(service_id, session.user_id, "see its invites")
        async with db.read_engine.connect() as c:
            rows = await c.execute(sa.select(*t.c).where(t.c.service_id == service_id)
                                   .order_by(t.c.created_ts.desc(), t.c.invite_id).limit(P.MAX_LIST))
            return {"invites": [listed(dict(r._mapping)) for r in rows]}

    async def invite_revoke(conn: Any, req: P.InviteRevoke) -> Dict[str, Any]:
        session = conn.require_session()
        row = await row_by(t.c.invite_id, req.invite_id)
        if row is None:
            raise InviteNotFound(f"no invite {req.invite_id}", "invite_id")
        try:
            await require_inviter(row["service_id"], session.user_id, "revoke its invites")
        except Forbidden:
            raise InviteNotFound(f"no invite {req.invite_id}", "invite_id") from None
        if status_of(row) != "pending" or not await transition(
                row["invite_id"], "pending", status="revoked", closed_by=session.user_id, closed_ts=ctx.now_ms()):
            raise InviteNotPending(f"this invite is {status_of(row)}, not pending", "invite_id")
        if ctx.vault is not None:
            await ctx.vault.delete(vault_key(row["invite_id"]))
        log.info("invite.revoked", invite_id=row["invite_id"], service_id=row["service_id"])
        await audit(session.user_id, "invite.revoke", service=row["service_id"],
                    details={"invite_id": row["invite_id"]})
        return {"invite_id": row["invite_id"], "status": "revoked"}

    # -- redemption ------------------------------------------------------------------------
    async def redeem(pseudonym: str, password: str, device_name: Optional[str], code: str) -> Tuple[Any, str]:
        P.check_code(code)
        row = await row_by(t.c.code_hash, _hash(code))
        if row is None:
            raise InviteCodeInvalid("invite_code matches no invite on this server", "invite_code")
        status = status_of(row)
        if status == "expired":
            raise InviteCodeExpired("this invite has expired; ask your clinician for a new one", "invite_code")
        if status in ("used", "claimed"):
            raise InviteCodeUsed("this invite was already used to make an account", "invite_code")
        if status == "revoked":
            raise InviteCodeRevoked("this invite was withdrawn; ask your clinician for a new one", "invite_code")
        vault = require_vault()
        invite_id, service_id = row["invite_id"], row["service_id"]
        identity = await vault.get(vault_key(invite_id))
        personal = (identity.name, identity.date_of_birth) if identity is not None else ()
        accounts.precheck(pseudonym, password, personal)  # before claiming: a bad pseudonym keeps the code
        if not await transition(invite_id, "pending", status="claimed", closed_ts=ctx.now_ms()):
            raise InviteCodeUsed("this invite was already used to make an account", "invite_code")
        try:
            session, token = await accounts.create_account(pseudonym, password, device_name, personal)
        except BaseException:
            await transition(invite_id, "claimed", status="pending", closed_ts=None)
            raise
        user_id = session.user_id
        await transition(invite_id, "claimed", status="used", used_by=user_id, closed_by=user_id,
                         closed_ts=ctx.now_ms())
        if identity is not None:
            await vault.put(user_id, identity)
            await vault.delete(vault_key(invite_id))
        if services.is_service(service_id):
            sp = spaces()  # signed by the inviting clinician if still staff with the power, else the steward
            await sp["set_role"](sp["system_session"](row["created_by"]), service_id, user_id, row["role"])
        log.info("invite.redeemed", invite_id=invite_id, service_id=service_id, user_id=user_id)
        await audit(user_id, "invite.redeem", member=user_id, service=service_id,
                    details={"invite_id": invite_id, "role": row["role"], "invited_by": row["created_by"]})
        return session, token

    accounts.invite_redeemer = redeem

    # -- discharge -------------------------------------------------------------------------
    async def kick_from(room_id: str, target: str, actor: str) -> bool:
        state = rooms.rooms.get(room_id)
        if state is None or state.membership(target) not in ("join", "invite"):
            return False
        target_level = state.user_level(target)
        kick = state.power_levels().kick
        joined = state.joined_members()
        order = ([actor] if actor in joined else []) + sorted(joined, key=lambda u: -state.user_level(u))
        for user_id in order:
            level = state.user_level(user_id)
            if user_id != target and level >= kick and level > target_level:
                await rooms.set_membership(spaces()["system_session"](user_id), room_id, "leave", target)
                return True
        log.warn("discharge.kick_skipped", room_id=room_id)
        return False

    async def service_discharge(conn: Any, req: P.ServiceDischarge) -> Dict[str, Any]:
        session = conn.require_session()
        service_id, target = str(req.service_id), str(req.user_id)
        await require_inviter(service_id, session.user_id, "discharge its members")
        role = services.role(service_id, target)
        if role is None:
            raise NotFound(f"{target} is not a member of this service", "user_id")
        if role in S.STAFF_ROLES:
            raise BadField("staff are not discharged; an admin changes their role instead", "user_id")
        policy = services.settings(service_id)["discharge_policy"]
        now = ctx.now_ms()
        async with db.engine.begin() as c:
            result = await c.execute(service_discharges.insert().values(
                service_id=service_id, user_id=target, discharged_by=session.user_id, ts=now, policy=policy,
                reason=req.reason))
            discharge_id = result.inserted_primary_key[0]
        left = 0
        if policy == "close":
            for room_id in services.rooms_of(service_id)[:5000]:
                if rooms.kinds.get(room_id) != "dm" and await kick_from(room_id, target, session.user_id):
                    left += 1
            await kick_from(service_id, target, session.user_id)
            await spaces()["sync_levels"](service_id, target, session.user_id)
        elif ctx.vault is not None:  # keep: a peer member now, without the care-team link
            identity = await ctx.vault.get(target)
            if identity is not None and identity.care_team:
                await ctx.vault.put(target, attr.evolve(identity, care_team=""))
        log.info("service.discharged", service_id=service_id, user_id=target, policy=policy, rooms=left)
        await audit(session.user_id, "service.discharge", member=target, service=service_id,
                    details={"discharge_id": discharge_id, "policy": policy, "reason": req.reason})
        frame = P.discharged_frame(P.discharge_notice(service_id, service_name(service_id), policy, now))
        for c in list(ctx.hub.user_conns.get(target, ())):
            c.reply(frame)
        notify = getattr(ctx.notifier, "notify", None)  # and in their notification feed
        if notify is not None:
            try:
                await notify(target, "service_discharged", frame)
            except Exception:  # noqa: BLE001 - the discharge stands; the push went
                log.failure("invites.notify_failed")
        return {"discharge_id": discharge_id, "policy": policy, "rooms_left": left, "ts": now}

    def service_name(service_id: str) -> str:
        state = rooms.rooms.get(service_id)
        return (state.name if state is not None else None) or "the service"

    async def discharge_notices(conn: Any, req: P.DischargeNotices) -> Dict[str, Any]:
        session = conn.require_session()
        d = service_discharges.c
        async with db.read_engine.connect() as c:
            rows = await c.execute(sa.select(d.service_id, d.policy, d.ts).where(d.user_id == session.user_id)
                                   .order_by(d.ts.desc()).limit(P.MAX_LIST))
            return {"notices": [P.discharge_notice(r.service_id, service_name(r.service_id), r.policy, r.ts)
                                for r in rows]}

    async def discharges(service_id: str, user_id: Optional[str] = None) -> List[Dict[str, Any]]:
        d = service_discharges.c
        q = sa.select(*service_discharges.c).where(d.service_id == service_id)
        if user_id is not None:
            q = q.where(d.user_id == user_id)
        async with db.read_engine.connect() as c:
            rows = await c.execute(q.order_by(d.ts.desc()).limit(P.MAX_LIST))
            return [dict(r._mapping) for r in rows]

    ctx.extras["invites"] = {"discharges": discharges, "sweep": sweep}
    ctx.add_loader(sweep)
    register_handlers({
        P.InviteCreate: invite_create, P.InviteList: invite_list, P.InviteRevoke: invite_revoke,
        P.ServiceDischarge: service_discharge, P.DischargeNotices: discharge_notices,
    })
