"""Storage of the social feature: derived-row statements, the full-text index, and reads.

Writes happen through the event's own transaction (the feature returns the statements
below from its observer's ``derive``); this store only reads, plus the start-up DDL of the
full-text index and the staff approvals (not derived from events).

Full-text search: ``search_docs`` holds each event's text. On SQLite an external-content
FTS5 table ``search_fts`` (rowid = pos) indexes it, kept in step by an AFTER INSERT
trigger; on PostgreSQL a GIN index on ``to_tsvector('simple', body)``. User queries never
reach the FTS syntax: they are cut into word terms, each quoted (FTS5) or handed to
``plainto_tsquery`` (PostgreSQL), and always bound as parameters.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa

from sharon_server.storage._sql import insert_for
from sharon_server.storage.schema import events
from sharon_server.storage.schema_social import notifications, search_docs, social_tag_approvals, social_tags

__all__ = ["SocialStore", "ensure_search_index", "fts_terms", "MAX_QUERY_TERMS"]

MAX_QUERY_TERMS = 16
_TERM = re.compile(r"\w+")


def fts_terms(query: str) -> List[str]:
    """The word terms of a user's search query (no operators survive: only ``\\w+`` runs)."""
    return _TERM.findall(query)[:MAX_QUERY_TERMS]


def _fts5_query(terms: Sequence[str]) -> str:
    """Every term quoted (FTS5 string syntax), implicitly ANDed; the last one as a prefix."""
    quoted = ['"' + t.replace('"', '""') + '"' for t in terms]
    quoted[-1] += "*"
    return " ".join(quoted)


_SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5("
    "body, content='search_docs', content_rowid='pos', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS search_docs_ai AFTER INSERT ON search_docs BEGIN "
    "INSERT INTO search_fts(rowid, body) VALUES (new.pos, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_docs_ad AFTER DELETE ON search_docs BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.pos, old.body); END",
)


async def ensure_search_index(engine: Any, dialect: str) -> bool:
    """Create the dialect's full-text index if missing; True if it was created (and rebuilt)."""
    async with engine.begin() as conn:
        if dialect == "sqlite":
            exists = (await conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'search_fts'")).first() is not None
            for ddl in _SQLITE_DDL:
                await conn.exec_driver_sql(ddl)
            if not exists:
                await conn.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
            return not exists
        await conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_search_docs_tsv ON search_docs "
            "USING gin (to_tsvector('simple', body))")
        return False


class SocialStore:
    """Statements for derived rows and the reads of tags, notifications and search."""

    def __init__(self, db: Any) -> None:
        self._w = db.engine
        self._r = db.read_engine
        self.dialect = db.dialect
        insert = insert_for(db.dialect)
        self.insert_tag = insert(social_tags).on_conflict_do_nothing()
        self.insert_notification = insert(notifications).on_conflict_do_nothing()
        self.insert_doc = insert(search_docs).on_conflict_do_nothing()
        self._insert_approval = insert(social_tag_approvals).on_conflict_do_nothing()

    # -- tags --------------------------------------------------------------------------
    async def tags_since(self, since_ts: int) -> List[Tuple[str, str, int]]:
        """``(service_id, tag, ts)`` of every tag use at or after ``since_ts`` (start-up)."""
        q = sa.select(social_tags.c.service_id, social_tags.c.tag, social_tags.c.ts).where(
            social_tags.c.ts >= since_ts)
        async with self._r.connect() as conn:
            return [tuple(r) for r in await conn.execute(q)]

    async def approvals(self) -> List[Tuple[str, str]]:
        """Every ``(service_id, tag)`` staff approved."""
        q = sa.select(social_tag_approvals.c.service_id, social_tag_approvals.c.tag)
        async with self._r.connect() as conn:
            return [tuple(r) for r in await conn.execute(q)]

    async def approve(self, service_id: str, tag: str, by: str, ts: int) -> None:
        """Record an approval (idempotent)."""
        async with self._w.begin() as conn:
            await conn.execute(self._insert_approval, [
                {"service_id": service_id, "tag": tag, "approved_by": by, "approved_ts": ts}])

    async def revoke(self, service_id: str, tag: str) -> bool:
        """Withdraw an approval; False if the tag was not approved."""
        a = social_tag_approvals.c
        async with self._w.begin() as conn:
            result = await conn.execute(sa.delete(social_tag_approvals).where(a.service_id == service_id, a.tag == tag))
        return bool(result.rowcount)

    async def tag_posts(self, service_id: str, tag: str, rooms: Sequence[str], before: Optional[int],
                        limit: int) -> List[Tuple[int, str, bytes]]:
        """``(pos, event_id, json)`` of events tagged ``tag`` in ``rooms``, newest first."""
        if not rooms:
            return []
        q = (sa.select(events.c.pos, events.c.event_id, events.c.json)
             .select_from(social_tags.join(events, events.c.pos == social_tags.c.pos))
             .where(social_tags.c.service_id == service_id, social_tags.c.tag == tag,
                    social_tags.c.room_id.in_(list(rooms)))
             .order_by(social_tags.c.pos.desc()).limit(limit))
        if before is not None:
            q = q.where(social_tags.c.pos < before)
        async with self._r.connect() as conn:
            return [tuple(r) for r in await conn.execute(q)]

    # -- notifications -------------------------------------------------------------------
    async def notifications(self, user_id: str, before: Optional[int], limit: int,
                            unread_only: bool) -> Tuple[List[Dict[str, Any]], int]:
        """One page of the user's notifications, newest first, and their unread count."""
        n = notifications.c
        q = sa.select(*notifications.c).where(n.user_id == user_id).order_by(n.pos.desc()).limit(limit)
        if before is not None:
            q = q.where(n.pos < before)
        if unread_only:
            q = q.where(n.is_read == sa.false())
        count = sa.select(sa.func.count()).select_from(notifications).where(
            n.user_id == user_id, n.is_read == sa.false())
        async with self._r.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(q)]
            unread = (await conn.execute(count)).scalar_one()
        return rows, int(unread)

    async def mark_read(self, user_id: str, upto: Optional[int]) -> int:
        """Mark the user's notifications read (up to ``upto`` inclusive); returns the unread left."""
        n = notifications.c
        q = sa.update(notifications).where(n.user_id == user_id, n.is_read == sa.false()).values(is_read=True)
        if upto is not None:
            q = q.where(n.pos <= upto)
        count = sa.select(sa.func.count()).select_from(notifications).where(
            n.user_id == user_id, n.is_read == sa.false())
        async with self._w.begin() as conn:
            await conn.execute(q)
            return int((await conn.execute(count)).scalar_one())

    async def all_unread_counts(self) -> Dict[str, int]:
        """Unread notifications per user who has any (start-up)."""
        n = notifications.c
        q = sa.select(n.user_id, sa.func.count()).where(n.is_read == sa.false()).group_by(n.user_id)
        async with self._r.connect() as conn:
            return {u: int(c) for u, c in await conn.execute(q)}

    async def unread_count(self, user_id: str) -> int:
        """How many unread notifications the user has."""
        n = notifications.c
        count = sa.select(sa.func.count()).select_from(notifications).where(
            n.user_id == user_id, n.is_read == sa.false())
        async with self._r.connect() as conn:
            return int((await conn.execute(count)).scalar_one())

    # -- search ------------------------------------------------------------------------------
    async def search(self, terms: Sequence[str], rooms: Sequence[str], before: Optional[int],
                     limit: int) -> List[Tuple[int, str, bytes, Optional[str]]]:
        """``(pos, event_id, json, snippet)`` of events in ``rooms`` matching every term, newest first."""
        if not rooms or not terms:
            return []
        params: Dict[str, Any] = {"rooms": list(rooms), "limit": limit,
                                  "before": before if before is not None else 2**62}
        if self.dialect == "sqlite":
            params["q"] = _fts5_query(terms)
            sql = ("SELECT d.pos, e.event_id, e.json, snippet(search_fts, 0, '[', ']', '…', 12) "
                   "FROM search_fts JOIN search_docs d ON d.pos = search_fts.rowid "
                   "JOIN events e ON e.pos = d.pos "
                   "WHERE search_fts MATCH :q AND d.room_id IN :rooms AND d.pos < :before "
                   "ORDER BY d.pos DESC LIMIT :limit")
        else:
            params["q"] = " ".join(terms)
            sql = ("SELECT d.pos, e.event_id, e.json, "
                   "ts_headline('simple', d.body, plainto_tsquery('simple', :q), "
                   "'StartSel=[, StopSel=], MaxWords=12, MinWords=4') "
                   "FROM search_docs d JOIN events e ON e.pos = d.pos "
                   "WHERE to_tsvector('simple', d.body) @@ plainto_tsquery('simple', :q) "
                   "AND d.room_id IN :rooms AND d.pos < :before "
                   "ORDER BY d.pos DESC LIMIT :limit")
        stmt = sa.text(sql).bindparams(sa.bindparam("rooms", expanding=True))
        async with self._r.connect() as conn:
            return [tuple(r) for r in await conn.execute(stmt, params)]
