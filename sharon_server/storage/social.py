"""Storage of the social feature: derived-row statements, the full-text index, and reads.

Writes happen through the event's own transaction (the feature returns the statements
below from its observer's ``derive``); this store only reads, plus the start-up DDL of the
full-text index and the staff approvals (not derived from events).

Full-text search: ``search_docs`` holds each event's text. On SQLite an external-content
FTS5 table ``search_fts`` (rowid = pos) indexes it. It is NOT kept in step by a trigger
(a per-row FTS5 insert inside the group-commit transaction cost the send path about a
sixth: decision 0011): ``feed_search_index`` copies every ``search_docs`` row above the
index's high-water mark in one bulk ``INSERT ... SELECT``; the feature runs it about every
half second, at start-up, and before every search, so a search sees every committed post.
The high-water mark is the index's own largest rowid (``max(id)`` of FTS5's ``docsize``
shadow table), committed atomically with the entries, so a crash between an event's commit
and the feed loses nothing: the next feed (at the latest, at start-up) picks the rows up.
Positions are committed in increasing order (one group committer), which is what makes a
single high-water mark enough. On PostgreSQL a GIN index on ``to_tsvector('simple', body)``,
maintained by PostgreSQL itself; the feed is a no-op there. User queries never
reach the FTS syntax: they are cut into word terms, each quoted (FTS5) or handed to
``plainto_tsquery`` (PostgreSQL), and always bound as parameters.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from twisted.logger import Logger

from sharon_server.storage._sql import SqliteTxn, immediate_transaction, insert_for, on_sqlite_thread
from sharon_server.storage.schema import events
from sharon_server.storage.schema_social import notifications, search_docs, social_tag_approvals, social_tags

__all__ = ["SocialStore", "ensure_search_index", "feed_search_index", "fts_terms", "MAX_QUERY_TERMS"]

log = Logger(namespace="sharon.social")

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
    # Older databases indexed by a per-row trigger; the bulk feed replaces it.
    "DROP TRIGGER IF EXISTS search_docs_ai",
    # A deleted document leaves the index only if it was indexed (an external-content FTS5
    # 'delete' of a row it never saw would corrupt the index).
    "DROP TRIGGER IF EXISTS search_docs_ad",
    "CREATE TRIGGER IF NOT EXISTS search_docs_ad2 AFTER DELETE ON search_docs "
    "WHEN old.pos <= (SELECT coalesce(max(id), 0) FROM search_fts_docsize) BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.pos, old.body); END",
)

FEED_INTERVAL_S = 0.5
"""How long after a committed document the index is fed (at most; a search feeds at once)."""

FEED_BATCH = 5000
"""Most ``search_docs`` rows one feed transaction indexes (the feed loops until caught up)."""

_FEED_MARK_SQL = "SELECT coalesce(max(id), 0) FROM search_fts_docsize"
"""The index's high-water mark: its largest rowid."""
_FEED_SQL = ("INSERT INTO search_fts(rowid, body) SELECT pos, body FROM search_docs "
             f"WHERE pos > ({_FEED_MARK_SQL}) ORDER BY pos LIMIT {{limit}}")


async def ensure_search_index(engine: Any, dialect: str) -> bool:
    """Create the dialect's full-text index if missing; True if it was created (and rebuilt).

    On SQLite the index is then brought up to date (``feed_search_index``): whatever was
    committed but not yet indexed when the server last stopped is indexed now.
    """
    async with engine.begin() as conn:
        if dialect == "sqlite":
            exists = (await conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'search_fts'")).first() is not None
            for ddl in _SQLITE_DDL:
                await conn.exec_driver_sql(ddl)
            if not exists:
                await conn.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
        else:
            await conn.exec_driver_sql(
                "CREATE INDEX IF NOT EXISTS ix_search_docs_tsv ON search_docs "
                "USING gin (to_tsvector('simple', body))")
            return False
    await feed_search_index(engine, dialect)
    return not exists


async def feed_search_index(engine: Any, dialect: str, batch: int = FEED_BATCH) -> Tuple[int, int]:
    """Index every ``search_docs`` row above the index's high-water mark.

    Returns ``(rows indexed, the new high-water mark)``. One transaction per ``batch``
    rows, looping until caught up. The caller serialises feeds (two at once would both
    index the same rows). PostgreSQL maintains its own index: ``(0, 0)``.
    """
    if dialect != "sqlite":
        return 0, 0
    return await on_sqlite_thread(engine, _feed_on_thread, max(1, int(batch)))


def _feed_on_thread(batch: int, dbapi_conn: Any) -> Tuple[int, int]:
    """Runs ON the writer connection's thread, in one hop from the reactor (it held the
    writer for one hop per statement through the async engine, about a dozen per feed):
    ``feed_search_index``'s transactions in plain ``sqlite3``. Errors are SQLAlchemy's, as
    they were."""
    sql = _FEED_SQL.format(limit=batch)

    def one(txn: SqliteTxn) -> Tuple[int, Optional[int]]:
        n = max(0, txn.execute(sql).rowcount or 0)
        return n, (int(txn.execute(_FEED_MARK_SQL).fetchone()[0]) if n < batch else None)

    total = 0
    while True:
        n, mark = immediate_transaction(dbapi_conn, one)
        total += n
        if mark is not None:
            return total, mark


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
        self._feed_lock = asyncio.Lock()
        self._wanted = 0
        self._indexed = 0
        self._feed_timer: Optional[asyncio.TimerHandle] = None
        self.fed_rows = 0
        self.feeds = 0

    # -- the full-text index feed (SQLite) ---------------------------------------------
    def document_derived(self, pos: int) -> None:
        """Note that a ``search_docs`` row at ``pos`` is on its way to the database."""
        if pos > self._wanted:
            self._wanted = pos

    def documents_committed(self) -> None:
        """Documents were committed: feed them to the index within ``FEED_INTERVAL_S``.

        Called on the commit path: no I/O here, at most one timer armed at a time.
        """
        if self.dialect != "sqlite" or self._feed_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (unit tests): the next search or start-up feeds them
            return
        self._feed_timer = loop.call_later(FEED_INTERVAL_S, self._feed_due)

    def _feed_due(self) -> None:
        self._feed_timer = None
        asyncio.ensure_future(self._feed_logged())

    async def _feed_logged(self) -> None:
        try:
            await self.catch_up()
        except Exception:  # noqa: BLE001 - the next feed (or start-up) retries from the mark
            log.failure("social.search_feed_failed")

    async def catch_up(self) -> int:
        """Index every committed document not indexed yet; returns how many rows were fed.

        Nothing to do (no database round trip) when every document derived so far is
        indexed; otherwise one feed, which indexes whatever has been committed by then.
        """
        if self.dialect != "sqlite" or (self._wanted <= self._indexed and not self._feed_lock.locked()):
            return 0
        async with self._feed_lock:
            if self._wanted <= self._indexed:
                return 0
            n, mark = await feed_search_index(self._w, self.dialect)
            self._indexed = max(self._indexed, mark)
        self.feeds += 1
        self.fed_rows += n
        return n

    def stop(self) -> None:
        """Cancel a pending feed (the rows are indexed at the next start-up)."""
        if self._feed_timer is not None:
            self._feed_timer.cancel()
            self._feed_timer = None

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
        await self.catch_up()
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
