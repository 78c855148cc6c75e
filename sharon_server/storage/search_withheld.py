"""Take a hidden event's text out of the full-text search index and put it back on unhide.

``withhold`` moves the event's ``search_docs`` row into ``search_withheld`` in one
transaction (on SQLite the ``search_docs`` delete trigger removes it from FTS5 when it was
indexed); ``restore`` moves it back and, on SQLite, indexes it at once in the same transaction
(the bulk feed of ``sharon_server.storage.social`` only indexes rows above the index's
high-water mark, and an old post is below it): first every committed document above the
mark, then the restored one. PostgreSQL's GIN index follows the row by itself.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from sharon_server.storage.schema_search_withheld import search_withheld
from sharon_server.storage.schema_social import search_docs

__all__ = ["withhold", "restore", "purge"]

_COLS = ("pos", "room_id", "event_id", "body")

_FTS_CATCH_UP = sa.text(
    "INSERT INTO search_fts(rowid, body) SELECT pos, body FROM search_docs "
    "WHERE pos > (SELECT coalesce(max(id), 0) FROM search_fts_docsize) ORDER BY pos")
_FTS_PUT_BACK = sa.text("INSERT INTO search_fts(rowid, body) VALUES (:pos, :body)")


async def withhold(engine: Any, event_id: str) -> int:
    """Move the event's search document aside; returns how many rows left the index (0 or 1)."""
    d = search_docs.c
    async with engine.begin() as conn:
        rows = (await conn.execute(sa.select(*[d[c] for c in _COLS]).where(d.event_id == event_id))).all()
        for row in rows:
            await conn.execute(search_withheld.delete().where(search_withheld.c.pos == row.pos))
            await conn.execute(search_withheld.insert().values(**dict(row._mapping)))
        if rows:
            await conn.execute(search_docs.delete().where(d.event_id == event_id))
    return len(rows)


async def restore(engine: Any, dialect: str, event_id: str) -> int:
    """Put a withheld search document back into ``search_docs`` and the index; returns 0 or 1."""
    w = search_withheld.c
    async with engine.begin() as conn:
        rows = (await conn.execute(sa.select(*[w[c] for c in _COLS]).where(w.event_id == event_id))).all()
        for row in rows:
            exists = (await conn.execute(sa.select(search_docs.c.pos).where(
                search_docs.c.pos == row.pos))).first()
            if exists is None:
                if dialect == "sqlite":
                    # Index every committed document above the mark first (what the bulk
                    # feed would do), then this one directly: the mark may now pass its
                    # position without skipping anyone (documents commit in position order,
                    # so any still in flight are above it).
                    await conn.execute(_FTS_CATCH_UP)
                    await conn.execute(_FTS_PUT_BACK, {"pos": row.pos, "body": row.body})
                await conn.execute(search_docs.insert().values(**dict(row._mapping)))
        if rows:
            await conn.execute(search_withheld.delete().where(w.event_id == event_id))
    return len(rows)


async def purge(engine: Any, event_id: str) -> int:
    """Forget a withheld document for good (a redacted event is never searchable again)."""
    async with engine.begin() as conn:
        result = await conn.execute(search_withheld.delete().where(search_withheld.c.event_id == event_id))
        return result.rowcount
