"""Storage of moderation (#6): held posts, event marks, pre-moderation counts, sanctions,
appeals. SQLAlchemy Core on the shared engines; every statement works on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from sharon_server.storage.schema_moderation import (
    mod_appeals, mod_held, mod_marks, mod_premod, mod_sanctions,
)
from sharon_server.storage import search_withheld

__all__ = ["ModerationStore"]


def _rows(result: Any) -> List[Dict[str, Any]]:
    return [dict(r._mapping) for r in result]


def _in_services(stmt: Any, table: Any, service_ids: Optional[List[Optional[str]]]) -> Any:
    """``stmt`` limited to rows of ``table`` in ``service_ids`` (``None`` in the list: rooms
    outside services); unchanged when ``service_ids`` is None (every service)."""
    if service_ids is None:
        return stmt
    named = [s for s in service_ids if s is not None]
    cond = table.c.service_id.in_(named) if named else sa.false()
    if None in service_ids:
        cond = sa.or_(cond, table.c.service_id.is_(None))
    return stmt.where(cond)


class ModerationStore:
    """Reads and writes of the moderation tables."""

    def __init__(self, db: Any) -> None:
        self._db = db

    async def _read(self, stmt: Any) -> List[Dict[str, Any]]:
        async with self._db.read_engine.connect() as conn:
            return _rows(await conn.execute(stmt))

    async def _write(self, stmt: Any) -> int:
        async with self._db.engine.begin() as conn:
            result = await conn.execute(stmt)
            return result.rowcount

    async def _insert_unique(self, table: Any, row: Dict[str, Any]) -> bool:
        """Insert ``row``; False if a unique key already holds one (held posts, appeals)."""
        try:
            await self._write(table.insert().values(**row))
            return True
        except IntegrityError:
            return False

    # -- held posts -------------------------------------------------------------------
    async def insert_held(self, row: Dict[str, Any]) -> bool:
        """Insert a held post; False if (author, txn_id) already has one."""
        return await self._insert_unique(mod_held, row)

    async def held_by_txn(self, author: str, txn_id: str) -> Optional[Dict[str, Any]]:
        rows = await self._read(sa.select(mod_held).where(
            mod_held.c.author == author, mod_held.c.txn_id == txn_id))
        return rows[0] if rows else None

    async def held(self, held_id: str) -> Optional[Dict[str, Any]]:
        rows = await self._read(sa.select(mod_held).where(mod_held.c.held_id == held_id))
        return rows[0] if rows else None

    async def held_of_author(self, author: str, limit: int) -> List[Dict[str, Any]]:
        return await self._read(sa.select(mod_held).where(
            mod_held.c.author == author, mod_held.c.status != "approved")
            .order_by(mod_held.c.created_ts.desc(), mod_held.c.held_id).limit(limit))

    async def held_pending(self, service_ids: Optional[List[Optional[str]]], limit: int) -> List[Dict[str, Any]]:
        """Held posts waiting for review, oldest first (``None`` in the list: rooms outside services)."""
        stmt = sa.select(mod_held).where(mod_held.c.status == "held")
        stmt = _in_services(stmt, mod_held, service_ids)
        return await self._read(stmt.order_by(mod_held.c.created_ts, mod_held.c.held_id).limit(limit))

    async def decide_held(self, held_id: str, status: str, by: str, ts: int, rule: Optional[str],
                          reason: Optional[str], event_id: Optional[str]) -> bool:
        """Move a held post from ``held`` to ``status``; False if it was already decided."""
        return bool(await self._write(mod_held.update().where(
            mod_held.c.held_id == held_id, mod_held.c.status == "held").values(
            status=status, decided_by=by, decided_ts=ts, decision_rule=rule,
            decision_reason=reason, event_id=event_id)))

    async def set_held_event(self, held_id: str, event_id: str) -> None:
        """Record the event an approved post was published as."""
        await self._write(mod_held.update().where(mod_held.c.held_id == held_id).values(event_id=event_id))

    async def reopen_held(self, held_id: str) -> None:
        """Put a post back to ``held`` (its approval could not be published)."""
        await self._write(mod_held.update().where(mod_held.c.held_id == held_id).values(
            status="held", decided_by=None, decided_ts=None, decision_rule=None, decision_reason=None))

    # -- marks ------------------------------------------------------------------------
    async def marks(self) -> List[Dict[str, Any]]:
        return await self._read(sa.select(mod_marks))

    async def put_mark(self, row: Dict[str, Any]) -> None:
        async with self._db.engine.begin() as conn:
            await conn.execute(mod_marks.delete().where(mod_marks.c.event_id == row["event_id"]))
            await conn.execute(mod_marks.insert().values(**row))

    async def unindex(self, event_id: str, purge: bool = False) -> int:
        """Take an event out of the search index (a hidden or redacted post stops being
        found): its document is withheld so an unhide can restore it (``reindex``); with
        ``purge`` (a redaction, permanent) it is dropped for good."""
        moved = await search_withheld.withhold(self._db.engine, event_id)
        if purge:
            await search_withheld.purge(self._db.engine, event_id)
        return moved

    async def reindex(self, event_id: str) -> int:
        """Put an unhidden event's withheld document back into the search index."""
        return await search_withheld.restore(self._db.engine, self._db.dialect, event_id)

    # -- pre-moderation counts ------------------------------------------------------------
    async def premod(self) -> List[Dict[str, Any]]:
        return await self._read(sa.select(mod_premod))

    async def put_premod(self, service_id: str, user_id: str, remaining: Optional[int], approved: int) -> None:
        async with self._db.engine.begin() as conn:
            await conn.execute(mod_premod.delete().where(
                mod_premod.c.service_id == service_id, mod_premod.c.user_id == user_id))
            await conn.execute(mod_premod.insert().values(
                service_id=service_id, user_id=user_id, remaining=remaining, approved=approved))

    # -- sanctions ------------------------------------------------------------------------
    async def insert_sanction(self, row: Dict[str, Any]) -> None:
        await self._write(mod_sanctions.insert().values(**row))

    async def active_sanctions(self, now: int) -> List[Dict[str, Any]]:
        """Mutes, suspensions and bans not lifted and not yet over (loaded at start-up)."""
        return await self._read(sa.select(mod_sanctions).where(
            mod_sanctions.c.kind != "warn", mod_sanctions.c.lifted_ts.is_(None),
            sa.or_(mod_sanctions.c.until_ts.is_(None), mod_sanctions.c.until_ts > now)))

    async def sanction(self, sanction_id: str) -> Optional[Dict[str, Any]]:
        rows = await self._read(sa.select(mod_sanctions).where(mod_sanctions.c.sanction_id == sanction_id))
        return rows[0] if rows else None

    async def sanctions(self, service_ids: Optional[List[Optional[str]]], user_id: Optional[str],
                        limit: int) -> List[Dict[str, Any]]:
        stmt = sa.select(mod_sanctions)
        if user_id is not None:
            stmt = stmt.where(mod_sanctions.c.user_id == user_id)
        stmt = _in_services(stmt, mod_sanctions, service_ids)
        return await self._read(stmt.order_by(mod_sanctions.c.issued_ts.desc(),
                                              mod_sanctions.c.sanction_id).limit(limit))

    async def lift_sanction(self, sanction_id: str, by: str, ts: int, reason: str) -> bool:
        return bool(await self._write(mod_sanctions.update().where(
            mod_sanctions.c.sanction_id == sanction_id, mod_sanctions.c.lifted_ts.is_(None)).values(
            lifted_ts=ts, lifted_by=by, lift_reason=reason)))

    # -- appeals --------------------------------------------------------------------------
    async def insert_appeal(self, row: Dict[str, Any]) -> bool:
        """Insert an appeal; False if the sanction already has one."""
        return await self._insert_unique(mod_appeals, row)

    async def appeal(self, appeal_id: str) -> Optional[Dict[str, Any]]:
        rows = await self._read(sa.select(mod_appeals).where(mod_appeals.c.appeal_id == appeal_id))
        return rows[0] if rows else None

    async def appeals_of(self, sanction_ids: List[str]) -> Dict[str, Dict[str, Any]]:
        if not sanction_ids:
            return {}
        rows = await self._read(sa.select(mod_appeals).where(mod_appeals.c.sanction_id.in_(sanction_ids)))
        return {r["sanction_id"]: r for r in rows}

    async def appeals(self, service_ids: Optional[List[Optional[str]]], open_only: bool,
                      limit: int) -> List[Dict[str, Any]]:
        stmt = sa.select(mod_appeals)
        if open_only:
            stmt = stmt.where(mod_appeals.c.outcome.is_(None))
        stmt = _in_services(stmt, mod_appeals, service_ids)
        return await self._read(stmt.order_by(mod_appeals.c.created_ts, mod_appeals.c.appeal_id).limit(limit))

    async def decide_appeal(self, appeal_id: str, outcome: str, by: str, ts: int, reason: str) -> bool:
        return bool(await self._write(mod_appeals.update().where(
            mod_appeals.c.appeal_id == appeal_id, mod_appeals.c.outcome.is_(None)).values(
            outcome=outcome, decided_by=by, decided_ts=ts, decision_reason=reason)))
