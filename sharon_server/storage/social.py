"""Storage of the social feature: derived-row statements, the full-text index, and reads.

Tag and notification rows are written in the event's own transaction (the feature returns
the statements below from its observer's ``derive``). The search corpus is not (decision
0018): this store derives it, and holds the start-up DDL of the full-text index and the
staff approvals (not derived from events).

Full-text search, both steps after the event's commit and outside the group-commit
transaction (decision 0018), in transactions of ``DERIVE_CHUNK`` events:

1. **The corpus** (``search_docs``, each event's text) is derived by SQL from the stored
   events (``derive_documents``): one ``INSERT ... SELECT`` reads each event's JSON and
   joins its text fields, so no Python runs per event. A durable mark
   (``search_feed.derived_to``) says how far it has got, committed with the documents. The
   feature runs it about every half second after a post with text, before every search and
   at start-up, so a search sees every acknowledged post and a crash loses nothing.
2. **The index**: on SQLite an external-content FTS5 table ``search_fts`` (rowid = pos) over
   ``search_docs``, fed in the same transaction by ``feed_search_index``'s bulk
   ``INSERT ... SELECT`` of every row above the index's high-water mark (no per-row trigger:
   decision 0011). That mark is the index's own largest rowid (``max(id)`` of FTS5's
   ``docsize`` shadow table); positions are committed in increasing order (one group
   committer), which is what makes single marks enough. On PostgreSQL a GIN index on
   ``to_tsvector('simple', body)``, maintained by PostgreSQL itself.

User queries never reach the FTS syntax: they are cut into word terms, each quoted (FTS5)
or handed to ``plainto_tsquery`` (PostgreSQL), and always bound as parameters.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import sqlalchemy as sa
from twisted.logger import Logger

from sharon_server.storage._sql import insert_for
from sharon_server.storage.schema import events
from sharon_server.storage.schema_search_withheld import search_withheld
from sharon_server.storage.schema_social import (
    notifications, search_docs, search_feed, social_tag_approvals, social_tags)

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

_FEED_SQL = (
    "INSERT INTO search_fts(rowid, body) SELECT pos, body FROM search_docs "
    "WHERE pos > (SELECT coalesce(max(id), 0) FROM search_fts_docsize) ORDER BY pos LIMIT {limit}")


DERIVE_CHUNK = 200
"""Most events one derive transaction reads: each chunk holds the single SQLite writer for a
few milliseconds, and group commits get it between chunks."""

DEFAULT_TEXT_FIELDS: Tuple[str, ...] = ("title", "body")


def _derive_sql(dialect: str, text_fields: Mapping[str, Sequence[str]]) -> Tuple[str, Dict[str, Any]]:
    """The statement that writes the search documents of the events in ``(:mark, :mark+page]``
    straight from their stored JSON, without a Python round trip per event.

    A document is the event's text fields (``text_fields[type]``, else title and body) that
    are non-empty strings, joined by a newline, exactly what the observer saw at send time;
    state events and events withheld by moderators get none.
    """
    fields = sorted({f for fs in text_fields.values() for f in fs} | set(DEFAULT_TEXT_FIELDS))
    col = {f: f"f{i}" for i, f in enumerate(fields)}
    params: Dict[str, Any] = {}

    def joined(names: Sequence[str]) -> str:
        expr = "NULL"
        for name in names:
            c = col[name]
            expr = c if expr == "NULL" else (
                f"CASE WHEN ({expr}) IS NULL THEN {c} WHEN {c} IS NULL THEN ({expr}) "
                f"ELSE ({expr}) || {nl} || {c} END")
        return expr

    if dialect == "sqlite":
        nl = "char(10)"
        content = "CAST(json AS TEXT) ->> '$.content'"
        extract = ", ".join(f"CASE WHEN json_type(c, '$.{f}') = 'text' THEN nullif(c ->> '$.{f}', '') END AS {col[f]}"
                            for f in fields)
        is_object = "json_type(c) = 'object'"
    else:
        nl = "chr(10)"
        content = "convert_from(json, 'UTF8')::jsonb -> 'content'"
        extract = ", ".join(f"CASE WHEN jsonb_typeof(c -> '{f}') = 'string' THEN nullif(c ->> '{f}', '') END AS {col[f]}"
                            for f in fields)
        is_object = "jsonb_typeof(c) = 'object'"
    materialized = "AS MATERIALIZED"
    cases = []
    for i, (etype, names) in enumerate(sorted(text_fields.items())):
        if tuple(names) == DEFAULT_TEXT_FIELDS:
            continue
        params[f"t{i}"] = etype
        cases.append(f"WHEN :t{i} THEN {joined(names)}")
    default = joined(DEFAULT_TEXT_FIELDS)
    body = f"CASE type {' '.join(cases)} ELSE {default} END" if cases else default
    # INSERT first, the WITH inside it: Python's sqlite3 reports a row count only for a
    # statement that starts with INSERT.
    sql = (
        f"INSERT INTO search_docs (pos, room_id, event_id, body) "
        f"WITH page {materialized} (SELECT pos, room_id, event_id, type, {content} AS c FROM events "
        f"WHERE pos > :mark AND pos <= :upto AND state_key IS NULL), "
        f"fields {materialized} (SELECT pos, room_id, event_id, type, {extract} FROM page WHERE {is_object}) "
        f"SELECT pos, room_id, event_id, body FROM (SELECT pos, room_id, event_id, {body} AS body FROM fields) d "
        f"WHERE body IS NOT NULL AND NOT EXISTS (SELECT 1 FROM search_withheld w WHERE w.pos = d.pos) "
        f"ORDER BY pos ON CONFLICT DO NOTHING")
    return sql, params


_PAGE_END_SQL = "SELECT max(pos) FROM (SELECT pos FROM events WHERE pos > :mark ORDER BY pos LIMIT :n) p"


async def derive_documents(engine: Any, dialect: str, text_fields: Mapping[str, Sequence[str]],
                           chunk: int = DERIVE_CHUNK) -> Tuple[int, int]:
    """Write the search documents of every committed event above the mark, ``chunk`` events
    per transaction (each with its FTS5 feed and the new mark), yielding between chunks.

    Returns ``(documents written, the new mark)``. The caller serialises calls.
    """
    sql, params = _derive_sql(dialect, text_fields)
    derive = sa.text(sql)
    page_end = sa.text(_PAGE_END_SQL)
    feed = _FEED_SQL.format(limit=FEED_BATCH)
    f = search_feed.c
    written = 0
    async with engine.connect() as conn:
        mark = (await conn.execute(sa.select(f.derived_to).where(f.id == 1))).scalar()
    mark = int(mark or 0)
    while True:
        async with engine.begin() as conn:
            upto = (await conn.execute(page_end, {"mark": mark, "n": chunk})).scalar()
            if upto is None:
                return written, mark
            result = await conn.execute(derive, dict(params, mark=mark, upto=upto))
            written += max(0, result.rowcount or 0)
            if dialect == "sqlite":
                await conn.exec_driver_sql(feed)
            updated = await conn.execute(sa.update(search_feed).where(f.id == 1).values(derived_to=upto))
            if not updated.rowcount:
                await conn.execute(search_feed.insert().values(id=1, derived_to=upto))
        mark = int(upto)
        await asyncio.sleep(0)  # let a waiting group commit have the writer


async def ensure_search_index(engine: Any, dialect: str, feed: bool = True) -> bool:
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
    if feed:
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
    sql = _FEED_SQL.format(limit=max(1, int(batch)))
    total = 0
    while True:
        async with engine.begin() as conn:
            n = max(0, (await conn.exec_driver_sql(sql)).rowcount or 0)
            if n < batch:
                mark = (await conn.exec_driver_sql(
                    "SELECT coalesce(max(id), 0) FROM search_fts_docsize")).scalar_one()
        total += n
        if n < batch:
            return total, int(mark)


class SocialStore:
    """Statements for derived rows and the reads of tags, notifications and search."""

    def __init__(self, db: Any, text_fields: Optional[Callable[[], Mapping[str, Sequence[str]]]] = None) -> None:
        self._w = db.engine
        self._r = db.read_engine
        self.dialect = db.dialect
        insert = insert_for(db.dialect)
        self.insert_tag = insert(social_tags).on_conflict_do_nothing()
        self.insert_notification = insert(notifications).on_conflict_do_nothing()
        self.insert_doc = insert(search_docs).on_conflict_do_nothing()
        self._insert_approval = insert(social_tag_approvals).on_conflict_do_nothing()
        self.text_fields: Callable[[], Mapping[str, Sequence[str]]] = text_fields or (lambda: {})
        """Event type -> the content keys whose strings are its searchable text."""
        self._feed_lock = asyncio.Lock()
        self._wanted = 0
        self._derived = 0
        self._feed_timer: Optional[asyncio.TimerHandle] = None
        self.fed_rows = 0
        self.feeds = 0

    # -- the search corpus and the full-text index feed ---------------------------------
    def text_committed(self, pos: int) -> None:
        """The event at ``pos``, which has searchable text, is committed: its document is
        written within ``FEED_INTERVAL_S`` (before any search). Called on the commit path:
        no I/O here, at most one timer armed at a time."""
        if pos > self._wanted:
            self._wanted = pos
        self.documents_committed()

    def documents_committed(self) -> None:
        """Derive and index within ``FEED_INTERVAL_S``."""
        if self._feed_timer is not None:
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
        except Exception:  # noqa: BLE001 - the mark did not move: the next feed retries
            log.failure("social.search_feed_failed")
            self.documents_committed()

    @property
    def behind(self) -> int:
        """How far (in stream positions) the search corpus is behind the newest text."""
        return max(0, self._wanted - self._derived)

    async def catch_up(self) -> int:
        """Write the documents of every committed event above the mark and index them;
        returns how many documents were written.

        Nothing to do (no database round trip) when every event with text is derived; a
        search calls this first, so it sees every acknowledged post.
        """
        if self._wanted <= self._derived and not self._feed_lock.locked():
            return 0
        async with self._feed_lock:
            if self._wanted <= self._derived:
                return 0
            n, mark = await derive_documents(self._w, self.dialect, self.text_fields())
            self._derived = max(self._derived, mark)
        self.feeds += 1
        self.fed_rows += n
        return n

    async def load_index(self) -> bool:
        """Start-up: create the full-text index if new, write the documents of the events
        above the mark (those a crash left underived), and index everything. True if the
        index was created."""
        created = await ensure_search_index(self._w, self.dialect, feed=False)
        async with self._feed_lock:
            n, self._derived = await derive_documents(self._w, self.dialect, self.text_fields())
        if n:
            log.info("social.search_documents_recovered", documents=n)
        await feed_search_index(self._w, self.dialect)
        return created

    def stop(self) -> None:
        """Cancel a pending timed feed (start-up derives what is left)."""
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
