"""Unmasking (#5): the only way staff see a member's real identity, every step audited.

``unmask_request`` by staff of a service (clinicians, moderators, admins, and server
admins) for a member of that service, with a reason code from ``config.unmask_reasons``
and free text. Where the service's ``unmask_requires_second_approver`` setting is true (the
default) the request waits for a DIFFERENT staff member of the same service to
``unmask_approve`` or ``unmask_refuse`` it; otherwise it is approved at once. Only the
requester may ``unmask_view`` an approved request, and only until ``config.unmask_ttl_ms``
after the approval (``unmask_expired`` after, and the request is marked expired).

Bounds: a request nobody decides expires the service's ``unmask_pending_ttl_ms`` after it
was made (default 2 hours; its ``decide_by_ts``): approving,
refusing or viewing it then answers ``unmask_expired``, it lists as ``expired``, and the
server audits ``unmask.expired`` (actor ``server``) the first time it notices (at start-up,
on any unmask op touching it, on ``unmask_requests`` and on the requester's next request).
A staff member has at most ``MAX_OPEN_PER_REQUESTER`` open requests (pending, or approved
and still viewable) server-wide; one more is refused with ``unmask_too_many_open``.

Audit actions: ``unmask.request``, ``unmask.approve``, ``unmask.refuse``, ``unmask.view``,
``unmask.expired``. Details carry the request ID, the reason code and the staff's reason
text; never identity values (the view's audit entry says *that* it was viewed).

Pushes (no identity): ``unmask_pending`` to the service's other staff when a request
awaits approval; ``unmask_decided`` to the requester when it is approved or refused.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from twisted.logger import Logger

from protocol import staff as P
from protocol.errors import (
    BadField, Forbidden, NoIdentity, NotFound, UnmaskDecided, UnmaskExpired, UnmaskNotApproved,
    UnmaskSelfApproval, UnmaskTooManyOpen,
)
from protocol.spaces import STAFF_ROLES
from sharon_server.ops import register_handlers
from sharon_server.storage.schema_staff import unmask_requests

__all__ = ["install", "reason_codes", "MAX_LISTED", "MAX_OPEN_PER_REQUESTER"]

log = Logger(namespace="sharon.unmask")

MAX_LISTED = 100
"""``unmask_requests`` returns at most this many requests (newest first)."""

MAX_OPEN_PER_REQUESTER = 5
"""Open requests (pending, or approved and still viewable) one staff member may have."""

SWEEP_BATCH = 100
"""Stale pending requests expired (and audited) per sweep."""


def reason_codes(config: Any) -> List[str]:
    """The configured reason codes (``unmask_reasons``, comma-separated)."""
    raw = getattr(config, "unmask_reasons", "") or ""
    return [c.strip() for c in raw.split(",") if c.strip()]


def install(ctx: Any) -> None:
    """Register the unmask operations."""
    rooms, accounts, hub, services = ctx.rooms, ctx.accounts, ctx.hub, ctx.services
    t = unmask_requests

    def ttl_ms() -> int:
        return max(1, int(getattr(ctx.config, "unmask_ttl_ms", 900_000) or 1))

    def pending_ttl(service_id: str) -> int:
        try:
            return int(services.settings(service_id).get(P.PENDING_TTL, P.DEFAULT_PENDING_TTL_MS))
        except Exception:  # noqa: BLE001 - a service that is gone: its requests keep the default
            return P.DEFAULT_PENDING_TTL_MS

    def decide_by(row: Dict[str, Any]) -> int:
        """When a pending request expires undecided."""
        return int(row["created_ts"]) + pending_ttl(row["service_id"])

    def stale(row: Dict[str, Any], now: int) -> bool:
        return row["status"] == "pending" and now >= decide_by(row)

    creating = asyncio.Lock()  # count-then-insert of one request at a time (the open cap)

    async def audit(actor: str, action: str, row: Dict[str, Any], **details: Any) -> None:
        if ctx.audit is None:
            raise Forbidden("unmasking needs the audit log, and this server has none")
        await ctx.audit.append(actor, action, member=row["member_id"], service=row["service_id"],
                               details={"request_id": row["request_id"], **details})

    def client_form(row: Dict[str, Any], now: int) -> Dict[str, Any]:
        status = row["status"]
        if status == "approved" and row["expires_ts"] is not None and now >= row["expires_ts"]:
            status = "expired"
        if stale(row, now):
            status = "expired"
        out = {
            "request_id": row["request_id"], "service_id": row["service_id"],
            "user_id": row["member_id"], "pseudonym": accounts.pseudonym_of(row["member_id"]) or "",
            "requester": row["requester"], "requester_pseudonym": accounts.pseudonym_of(row["requester"]) or "",
            "reason_code": row["reason_code"], "reason": row["reason"], "status": status,
            "created_ts": row["created_ts"],
        }
        for key in ("decided_by", "decided_ts", "decision_reason", "expires_ts"):
            if row.get(key) is not None:
                out[key] = row[key]
        if row["status"] == "pending" or (row["status"] == "expired" and row.get("decided_by") is None):
            out["decide_by_ts"] = decide_by(row)
        return out

    async def expire_pending(row: Dict[str, Any]) -> bool:
        """Mark one stale pending request expired; audit it if this call did (True)."""
        async with ctx.db.engine.begin() as dbconn:
            result = await dbconn.execute(t.update().where(t.c.request_id == row["request_id"],
                                                           t.c.status == "pending").values(status="expired"))
        if result.rowcount != 1:
            return False
        row["status"] = "expired"
        await audit("server", "unmask.expired", row, undecided=True, decide_by_ts=decide_by(row))
        log.info("unmask.expired_undecided", request_id=row["request_id"], service_id=row["service_id"])
        return True

    async def sweep(where: Any = None) -> int:
        """Expire (and audit) up to ``SWEEP_BATCH`` stale pending requests, oldest first."""
        now = ctx.now_ms()
        stmt = sa.select(*t.c).where(t.c.status == "pending")
        if where is not None:
            stmt = stmt.where(where)
        stmt = stmt.order_by(t.c.created_ts, t.c.request_id).limit(SWEEP_BATCH)
        async with ctx.db.read_engine.connect() as dbconn:
            rows = [dict(r._mapping) for r in await dbconn.execute(stmt)]
        expired = 0
        for row in rows:
            if stale(row, now):
                expired += await expire_pending(row)
        return expired

    async def open_count(requester: str) -> int:
        now = ctx.now_ms()
        stmt = sa.select(*t.c).where(t.c.requester == requester, sa.or_(
            t.c.status == "pending", sa.and_(t.c.status == "approved", t.c.expires_ts > now)),
        ).limit(MAX_OPEN_PER_REQUESTER + SWEEP_BATCH)
        async with ctx.db.read_engine.connect() as dbconn:
            rows = [dict(r._mapping) for r in await dbconn.execute(stmt)]
        return sum(1 for r in rows if not stale(r, now))

    async def load_sweep() -> None:
        if ctx.audit is not None:
            expired = await sweep()
            if expired:
                log.info("unmask.swept", expired=expired)

    ctx.add_loader(load_sweep)

    async def load_row(request_id: str) -> Dict[str, Any]:
        async with ctx.db.read_engine.connect() as conn:
            row = (await conn.execute(sa.select(*t.c).where(t.c.request_id == request_id))).first()
        if row is None:
            raise NotFound(f"no unmask request {request_id}", "request_id")
        return dict(row._mapping)

    async def require_staff(service_id: str, user_id: str) -> None:
        await services.refresh_admins()
        if not services.is_staff(service_id, user_id):
            raise Forbidden("only staff of this service can do that")

    def staff_of(service_id: str) -> List[str]:
        state = rooms.rooms.get(service_id)
        if state is None:
            return []
        return sorted(u for u in state.joined_members() if services.role(service_id, u) in STAFF_ROLES)

    def push(user_ids: List[str], frame: Dict[str, Any]) -> None:
        for user_id in user_ids:
            for conn in list(hub.user_conns.get(user_id, ())):
                conn.reply(frame)

    async def decide(row: Dict[str, Any], by: str, status: str, reason: Optional[str],
                     deadline: bool = True) -> Dict[str, Any]:
        """Move a pending request to approved/refused; UnmaskDecided if someone was first."""
        now = ctx.now_ms()
        values: Dict[str, Any] = {"status": status, "decided_by": by, "decided_ts": now, "decision_reason": reason}
        if status == "approved":
            values["expires_ts"] = now + ttl_ms()
        async with ctx.db.engine.begin() as conn:
            where = [t.c.request_id == row["request_id"], t.c.status == "pending"]
            if deadline:  # not one that expired meanwhile
                where.append(t.c.created_ts > now - pending_ttl(row["service_id"]))
            result = await conn.execute(t.update().where(*where).values(**values))
        if result.rowcount != 1:
            raise UnmaskDecided("this unmask request was already decided", "request_id")
        row.update(values)
        return row

    # -- handlers --------------------------------------------------------------------------
    async def unmask_request(conn: Any, req: P.UnmaskRequest) -> Dict[str, Any]:
        session = conn.require_session()
        service_id, member = str(req.service_id), str(req.user_id)
        services.require_service(service_id)
        await require_staff(service_id, session.user_id)
        if req.reason_code not in reason_codes(ctx.config):
            raise BadField(f"reason_code must be one of: {', '.join(reason_codes(ctx.config))}", "reason_code")
        if not services.is_member(service_id, member):
            raise NotFound(f"{member} is not a member of this service", "user_id")
        if member == session.user_id:
            raise BadField("you cannot unmask yourself", "user_id")
        if ctx.vault is None or not await ctx.vault.has(member):
            raise NoIdentity("the vault holds no identity for this member", "user_id")
        async with creating:
            await sweep(t.c.requester == session.user_id)
            if await open_count(session.user_id) >= MAX_OPEN_PER_REQUESTER:
                raise UnmaskTooManyOpen(
                    f"you already have {MAX_OPEN_PER_REQUESTER} open unmask requests; wait for them to be "
                    "decided or to expire")
            return await create(session, service_id, member, req)

    async def create(session: Any, service_id: str, member: str, req: P.UnmaskRequest) -> Dict[str, Any]:
        now = ctx.now_ms()
        row: Dict[str, Any] = {
            "request_id": "um_" + secrets.token_urlsafe(12), "service_id": service_id, "member_id": member,
            "requester": session.user_id, "reason_code": req.reason_code, "reason": req.reason,
            "status": "pending", "created_ts": now, "decided_by": None, "decided_ts": None,
            "decision_reason": None, "expires_ts": None,
        }
        second = bool(services.settings(service_id).get(P.SECOND_APPROVER, True))
        await audit(session.user_id, "unmask.request", row, reason_code=req.reason_code, reason=req.reason,
                    second_approver=second)
        async with ctx.db.engine.begin() as dbconn:
            await dbconn.execute(t.insert().values(**row))
        log.info("unmask.requested", request_id=row["request_id"], service_id=service_id, second_approver=second)
        if second:
            others = [u for u in staff_of(service_id) if u != session.user_id]
            push(others, P.unmask_pending_frame(client_form(row, now)))
        else:
            row = await decide(row, session.user_id, "approved", None, deadline=False)  # no approver to wait for
            await audit(session.user_id, "unmask.approve", row, second_approver=False)
        return client_form(row, ctx.now_ms())

    async def decide_op(session: Any, request_id: str, status: str, reason: Optional[str]) -> Dict[str, Any]:
        row = await load_row(request_id)
        await require_staff(row["service_id"], session.user_id)
        if row["requester"] == session.user_id:
            raise UnmaskSelfApproval("a different staff member of this service must decide this request",
                                     "request_id")
        if stale(row, ctx.now_ms()):
            await expire_pending(row)
            raise UnmaskExpired("this unmask request expired before anyone decided it; make a new request",
                                "request_id")
        if row["status"] == "expired" and row["decided_by"] is None:
            raise UnmaskExpired("this unmask request expired before anyone decided it; make a new request",
                                "request_id")
        if row["status"] != "pending":
            raise UnmaskDecided(f"this unmask request is already {row['status']}", "request_id")
        row = await decide(row, session.user_id, status, reason)
        action = "unmask.approve" if status == "approved" else "unmask.refuse"
        await audit(session.user_id, action, row, **({"reason": reason} if reason else {}))
        log.info(action, request_id=request_id)
        out = client_form(row, ctx.now_ms())
        push([row["requester"]], P.unmask_decided_frame(out))
        return out

    async def unmask_approve(conn: Any, req: P.UnmaskApprove) -> Dict[str, Any]:
        return await decide_op(conn.require_session(), req.request_id, "approved", None)

    async def unmask_refuse(conn: Any, req: P.UnmaskRefuse) -> Dict[str, Any]:
        return await decide_op(conn.require_session(), req.request_id, "refused", req.reason)

    async def unmask_view(conn: Any, req: P.UnmaskView) -> Dict[str, Any]:
        session = conn.require_session()
        row = await load_row(req.request_id)
        await require_staff(row["service_id"], session.user_id)
        if row["requester"] != session.user_id:
            raise Forbidden("only the staff member who asked can view this unmask", "request_id")
        if stale(row, ctx.now_ms()):
            await expire_pending(row)
        if row["status"] == "expired":
            raise UnmaskExpired("this unmask has expired; make a new request", "request_id")
        if row["status"] != "approved":
            raise UnmaskNotApproved(f"this unmask request is {row['status']}, not approved", "request_id")
        now = ctx.now_ms()
        if now >= row["expires_ts"]:
            async with ctx.db.engine.begin() as dbconn:
                await dbconn.execute(t.update().where(t.c.request_id == row["request_id"],
                                                      t.c.status == "approved").values(status="expired"))
            await audit(session.user_id, "unmask.expired", row, expires_ts=row["expires_ts"])
            raise UnmaskExpired("this unmask has expired; make a new request", "request_id")
        identity = await ctx.vault.get(row["member_id"]) if ctx.vault is not None else None
        if identity is None:
            raise NoIdentity("the vault holds no identity for this member", "user_id")
        await audit(session.user_id, "unmask.view", row)  # audited before anything is released
        log.info("unmask.viewed", request_id=row["request_id"])
        return {"request_id": row["request_id"], "user_id": row["member_id"],
                "pseudonym": accounts.pseudonym_of(row["member_id"]) or "",
                "identity": identity.to_dict(), "expires_ts": row["expires_ts"]}

    async def unmask_list(conn: Any, req: P.UnmaskRequests) -> Dict[str, Any]:
        session = conn.require_session()
        service_id = str(req.service_id)
        services.require_service(service_id)
        await require_staff(service_id, session.user_id)
        await sweep(t.c.service_id == service_id)
        now = ctx.now_ms()
        stale_before = now - pending_ttl(service_id)
        stmt = sa.select(*t.c).where(t.c.service_id == service_id)
        if req.status == "approved":
            stmt = stmt.where(t.c.status == "approved", t.c.expires_ts > now)
        elif req.status == "pending":
            stmt = stmt.where(t.c.status == "pending", t.c.created_ts > stale_before)
        elif req.status == "expired":
            stmt = stmt.where(sa.or_(t.c.status == "expired",
                                     sa.and_(t.c.status == "approved", t.c.expires_ts <= now),
                                     sa.and_(t.c.status == "pending", t.c.created_ts <= stale_before)))
        elif req.status is not None:
            stmt = stmt.where(t.c.status == req.status)
        stmt = stmt.order_by(t.c.created_ts.desc(), t.c.request_id).limit(MAX_LISTED)
        async with ctx.db.read_engine.connect() as dbconn:
            rows = [dict(r._mapping) for r in await dbconn.execute(stmt)]
        return {"requests": [client_form(r, now) for r in rows]}

    async def audit_query(conn: Any, req: P.AuditQuery) -> Dict[str, Any]:
        session = conn.require_session()
        await services.refresh_admins()
        if not services.is_admin(session.user_id):
            raise Forbidden("only server admins can read the audit log")
        if ctx.audit is None:
            raise NotFound("this server has no audit log")
        entries = await ctx.audit.query(actor=req.actor, member=req.member, action=req.action,
                                        since_ms=req.since_ts, until_ms=req.until_ts, limit=req.limit,
                                        before_seq=req.before)
        nxt = entries[-1].seq if len(entries) == req.limit and entries[-1].seq > 1 else None
        return {"entries": [e.to_json() for e in entries], "next": nxt}

    register_handlers({
        P.UnmaskRequest: unmask_request, P.UnmaskApprove: unmask_approve, P.UnmaskRefuse: unmask_refuse,
        P.UnmaskView: unmask_view, P.UnmaskRequests: unmask_list, P.AuditQuery: audit_query,
    })
