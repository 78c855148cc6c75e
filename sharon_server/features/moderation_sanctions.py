"""Operation handlers of sanctions (warn, mute, suspend, ban) and appeals."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twisted.logger import Logger

from protocol import moderation as P
from protocol.errors import (
    AlreadyDecided, AppealExists, BadField, Forbidden, NotFound, SameModerator, SharonError,
)
from sharon_server.features.moderation import new_id
from sharon_server.ops import register_handlers

__all__ = ["register"]

log = Logger(namespace="sharon.moderation")


def register(mod: Any) -> None:
    """Register the sanction and appeal handlers of ``mod`` (a ``Moderation``)."""
    rooms, services, store, accounts = mod.rooms, mod.services, mod.store, mod.accounts

    async def remove_from(user_id: str, service_id: Optional[str]) -> int:
        """Make a banned user leave the service and its rooms (everything, server-wide)."""
        left = 0
        for room_id in sorted(rooms.joined_rooms(user_id)):
            in_scope = service_id is None or room_id == service_id or services.service_of(room_id) == service_id
            if not in_scope:
                continue
            try:
                await rooms.set_membership(mod.author_session(user_id), room_id, "leave")
                left += 1
            except SharonError as err:
                log.warn("moderation.ban_leave_failed", room_id=room_id, code=err.code)
        return left

    async def sanction(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        me, target = session.user_id, str(req.user_id)
        service_id = req.service_id
        if service_id is None:
            await services.refresh_admins()
            if not services.is_admin(me):
                raise Forbidden("only server admins issue server-wide sanctions; name a service_id")
        else:
            await mod.require_staff(service_id, me)
        if accounts.pseudonym_of(target) is None:
            raise NotFound(f"no user {target} on this server", "user_id")
        if target == me:
            raise BadField("you cannot sanction yourself", "user_id")
        if services.is_staff(service_id, target) and not services.is_admin(me):
            raise Forbidden("only server admins can sanction staff")
        if service_id is not None and not services.is_member(service_id, target) and req.kind != "ban":
            raise NotFound(f"{target} is not a member of this service", "user_id")
        rule = mod.rule(service_id, req.rule)
        now = mod.now_ms()
        until = req.until_ts
        if req.kind in ("mute", "suspend") and until is None:
            raise BadField(f"a {req.kind} needs until_ts (when it ends)", "until_ts")
        if req.kind == "warn" and until is not None:
            raise BadField("a warning has no until_ts", "until_ts")
        if until is not None and until <= now:
            raise BadField("until_ts must be in the future", "until_ts")
        where = mod._service_name(service_id) if service_id else ""
        row = {"sanction_id": new_id("s_"), "service_id": service_id, "user_id": target, "kind": req.kind,
               "rule": rule["id"], "reason": req.reason,
               "notice": P.sanction_notice(req.kind, where, rule, req.reason, until),
               "issued_by": me, "issued_ts": now, "until_ts": until,
               "lifted_ts": None, "lifted_by": None, "lift_reason": None}
        await store.insert_sanction(row)
        if req.kind != "warn":
            mod.active.setdefault(target, {})[row["sanction_id"]] = row
        # tell the member first: a suspension signs their connections out just after
        await mod.tell(target, {"op": "sanction", "sanction": mod.member_form(row)})
        effects: Dict[str, Any] = {}
        if req.kind == "suspend" or (req.kind == "ban" and service_id is None):
            effects["sessions_revoked"] = await accounts.revoke_user(target)
        if req.kind == "ban":
            effects["rooms_left"] = await remove_from(target, service_id)
        await mod.audit(me, f"moderation.{req.kind}", member=target, service=service_id,
                        details={"sanction_id": row["sanction_id"], "rule": rule["id"], "reason": req.reason,
                                 "until_ts": until})
        log.info("moderation.sanction", kind=req.kind, sanction_id=row["sanction_id"], service_id=service_id)
        return dict(mod.staff_form(row), **effects)

    async def staff_scope(conn: Any, req: Any, what: str) -> Optional[List[Optional[str]]]:
        """The services a staff listing (sanctions, appeals) covers: ``req.service_id`` if
        the caller is its staff, else every service the caller is staff of (None: all, for
        an admin); Forbidden for a caller who is staff nowhere."""
        session = conn.require_session()
        await services.refresh_admins()
        if req.service_id is not None:
            await mod.require_staff(req.service_id, session.user_id)
            return [req.service_id]
        scope = mod.staff_services(session.user_id)
        if scope is not None and not scope:
            raise Forbidden(f"only staff can list {what}")
        return scope

    async def with_appeals(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
        return await store.appeals_of([r["sanction_id"] for r in rows])

    async def sanctions(conn: Any, req: Any) -> Dict[str, Any]:
        scope = await staff_scope(conn, req, "sanctions")
        rows = await store.sanctions(scope, req.user_id, req.limit)
        if req.active:
            now = mod.now_ms()
            rows = [r for r in rows if r["lifted_ts"] is None and r["kind"] != "warn"
                    and (r["until_ts"] is None or r["until_ts"] > now)]
        appeals = await with_appeals(rows)
        return {"sanctions": [mod.staff_form(r, appeals.get(r["sanction_id"])) for r in rows]}

    async def my_sanctions(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        rows = await store.sanctions(None, session.user_id, req.limit)
        appeals = await with_appeals(rows)
        return {"sanctions": [mod.member_form(r, appeals.get(r["sanction_id"])) for r in rows]}

    async def lift(sanction_row: Dict[str, Any], by: str, reason: str) -> bool:
        ok = await store.lift_sanction(sanction_row["sanction_id"], by, mod.now_ms(), reason)
        mod.active.get(sanction_row["user_id"], {}).pop(sanction_row["sanction_id"], None)
        return ok

    async def sanction_lift(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        row = await store.sanction(req.sanction_id)
        if row is None:
            raise NotFound(f"no sanction {req.sanction_id}", "sanction_id")
        await mod.require_staff(row["service_id"], session.user_id)
        if row["lifted_ts"] is not None:
            raise AlreadyDecided("this sanction was already lifted", "sanction_id")
        if not await lift(row, session.user_id, req.reason):
            raise AlreadyDecided("this sanction was already lifted", "sanction_id")
        await mod.tell(row["user_id"], {"op": "sanction_lifted", "sanction_id": row["sanction_id"],
                                  "notice": f"A moderator has ended your {row['kind']} early. {req.reason}"})
        await mod.audit(session.user_id, "moderation.lift", member=row["user_id"], service=row["service_id"],
                        details={"sanction_id": row["sanction_id"], "kind": row["kind"], "reason": req.reason})
        return {"sanction_id": row["sanction_id"], "lifted": True}

    # -- appeals ----------------------------------------------------------------------------
    async def create_appeal(user_id: str, sanction_id: str, text: str) -> Dict[str, Any]:
        row = await store.sanction(sanction_id)
        if row is None or row["user_id"] != user_id:
            raise NotFound(f"no sanction {sanction_id} of yours", "sanction_id")
        record = {"appeal_id": new_id("a_"), "sanction_id": row["sanction_id"], "service_id": row["service_id"],
                  "user_id": user_id, "text": text, "created_ts": mod.now_ms(), "outcome": None,
                  "decided_by": None, "decided_ts": None, "decision_reason": None}
        if not await store.insert_appeal(record):
            raise AppealExists("you have already appealed this sanction; each sanction can be appealed once",
                               "sanction_id")
        triage = mod.ctx.extras.get("triage")
        if triage is not None and hasattr(triage, "add_item") and "appeal" in getattr(triage, "kinds", ()):
            try:
                await triage.add_item("appeal", row["service_id"], None, None, user_id, None, 0,
                                      f"appeal against a {row['kind']}", ref=record["appeal_id"])
            except Exception:  # noqa: BLE001 - the appeal is stored; the queue is a convenience
                log.failure("moderation.triage_failed", appeal_id=record["appeal_id"])
        await mod.audit(user_id, "appeal.create", member=user_id, service=row["service_id"],
                        details={"appeal_id": record["appeal_id"], "sanction_id": row["sanction_id"]})
        return {"appeal_id": record["appeal_id"], "sanction_id": row["sanction_id"],
                "notice": "Your appeal has been sent. A moderator who did not make the decision will look at it."}

    async def appeal(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        return await create_appeal(session.user_id, req.sanction_id, req.text)

    async def appeal_signed_out(conn: Any, req: Any) -> Dict[str, Any]:
        account = await accounts.check_password(req.pseudonym, req.password)
        return await create_appeal(account.user_id, req.sanction_id, req.text)

    async def appeals(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        scope = await staff_scope(conn, req, "appeals")
        rows = await store.appeals(scope, not req.all, req.limit)
        out = []
        for a in rows:
            s = await store.sanction(a["sanction_id"])
            out.append({"appeal_id": a["appeal_id"], "sanction_id": a["sanction_id"], "service_id": a["service_id"],
                        "user_id": a["user_id"], "pseudonym": accounts.pseudonym_of(a["user_id"]) or "",
                        "text": a["text"], "created_ts": a["created_ts"], "outcome": a["outcome"],
                        "decided_by": a["decided_by"], "decision_reason": a["decision_reason"],
                        "sanction": mod.staff_form(s) if s is not None else None,
                        "you_may_decide": s is not None and s["issued_by"] != session.user_id})
        return {"appeals": out}

    async def appeal_decide(conn: Any, req: Any) -> Dict[str, Any]:
        session = conn.require_session()
        a = await store.appeal(req.appeal_id)
        if a is None:
            raise NotFound(f"no appeal {req.appeal_id}", "appeal_id")
        row = await store.sanction(a["sanction_id"])
        await mod.require_staff(a["service_id"], session.user_id)
        if row is None:
            raise NotFound("the appealed sanction is gone", "appeal_id")
        if row["issued_by"] == session.user_id:
            raise SameModerator("you issued this sanction; a different moderator must decide the appeal",
                                "appeal_id")
        if a["outcome"] is not None:
            raise AlreadyDecided("this appeal was already decided", "appeal_id")
        if not await store.decide_appeal(a["appeal_id"], req.outcome, session.user_id, mod.now_ms(), req.reason):
            raise AlreadyDecided("this appeal was already decided", "appeal_id")
        lifted = False
        if req.outcome == "overturned" and row["lifted_ts"] is None:
            lifted = await lift(row, session.user_id, "appeal overturned: " + req.reason)
        # the appeal's triage item (ref = appeal_id) closes with the decision, as a held post's does
        await mod.resolve_triage(a["service_id"], a["appeal_id"],
                                 "action_taken" if req.outcome == "overturned" else "no_action", session.user_id)
        await mod.tell(a["user_id"], {"op": "appeal_decided", "appeal_id": a["appeal_id"],
                                "sanction_id": a["sanction_id"], "outcome": req.outcome, "reason": req.reason,
                                "notice": P.appeal_notice(req.outcome, req.reason)})
        await mod.audit(session.user_id, "appeal.decide", member=a["user_id"], service=a["service_id"],
                        details={"appeal_id": a["appeal_id"], "sanction_id": a["sanction_id"],
                                 "outcome": req.outcome, "reason": req.reason})
        return {"appeal_id": a["appeal_id"], "outcome": req.outcome, "sanction_lifted": lifted}

    R = P.REQUESTS
    register_handlers({
        R["sanction"]: sanction, R["sanctions"]: sanctions, R["my_sanctions"]: my_sanctions,
        R["sanction_lift"]: sanction_lift, R["appeal"]: appeal, R["appeal_signed_out"]: appeal_signed_out,
        R["appeals"]: appeals,
        R["appeal_decide"]: appeal_decide,
    })
