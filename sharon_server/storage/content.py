"""Queries of the content feature: derived-row statements, listings, drafts, follows, presents.

Derived-row statements (``derived_*``) are executed by the group committer with executemany
in the event's own transaction; their bind names start with ``b_`` so they never clash
with column names. Reads use the read engine; drafts, follows and the catalogue are small
direct writes on the writer.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import sqlalchemy as sa

from protocol.canonical_json import decode_stored
from sharon_server.storage._sql import BIGINT_MAX, insert_for
from sharon_server.storage.schema import events
from sharon_server.storage.schema_content import (
    content_drafts, content_follows, content_items, content_presents, content_reactions,
    content_relations,
)

__all__ = ["ContentStore"]

_I, _R, _X = content_items, content_relations, content_reactions
_b = sa.bindparam

INSERT_ITEM = _I.insert()
INSERT_RELATION = _R.insert()
BUMP_CHILD = (_I.update().where(_I.c.event_id == _b("b_parent"))
              .values(child_count=_I.c.child_count + 1, last_pos=_b("b_pos", type_=sa.BigInteger)))
BUMP_PRESENT = _I.update().where(_I.c.event_id == _b("b_parent")).values(present_count=_I.c.present_count + 1)
SET_CURRENT = _I.update().where(_I.c.event_id == _b("b_parent")).values(current_id=_b("b_current"))
SET_FLAGS = (_I.update().where(_I.c.event_id == _b("b_parent"))
             .values(pinned=_b("b_pinned", type_=sa.Boolean), locked=_b("b_locked", type_=sa.Boolean)))
DELETE_REACTION = _X.delete().where(_X.c.target == _b("b_target"), _X.c.key == _b("b_key"),
                                    _X.c.user_id == _b("b_user"))

_ITEM_BY_ID = sa.select(*_I.c).where(_I.c.event_id == _b("event_id"))
_EVENTS_BY_ID = sa.select(events.c.event_id, events.c.pos, events.c.json).where(
    events.c.event_id.in_(_b("ids", expanding=True)))
_EVENT_BY_ID = sa.select(events.c.room_id, events.c.type, events.c.state_key, events.c.sender).where(
    events.c.event_id == _b("event_id"))
_THREADS_PINNED = (sa.select(*_I.c).where(_I.c.room_id == _b("room_id"), _I.c.type == _b("type"), _I.c.pinned)
                   .order_by(_I.c.last_pos.desc()).limit(_b("limit", type_=sa.Integer)))
_THREADS = (sa.select(*_I.c)
            .where(_I.c.room_id == _b("room_id"), _I.c.type == _b("type"), sa.not_(_I.c.pinned),
                   _I.c.last_pos < _b("before", type_=sa.BigInteger))
            .order_by(_I.c.last_pos.desc()).limit(_b("limit", type_=sa.Integer)))
_ITEMS_IN_ROOMS = (sa.select(*_I.c)
                   .where(_I.c.room_id.in_(_b("room_ids", expanding=True)),
                          _I.c.type.in_(_b("types", expanding=True)),
                          _I.c.pos < _b("before", type_=sa.BigInteger))
                   .order_by(_I.c.pos.desc()).limit(_b("limit", type_=sa.Integer)))
_RELATED = (sa.select(events.c.json, events.c.event_id, events.c.pos)
            .select_from(_R.join(events, events.c.event_id == _R.c.event_id))
            .where(_R.c.parent_id == _b("parent_id"), _R.c.rel == _b("rel"),
                   _R.c.pos > _b("after", type_=sa.BigInteger))
            .order_by(_R.c.pos).limit(_b("limit", type_=sa.Integer)))
_REACTIONS = (sa.select(_X.c.target, _X.c.key, sa.func.count().label("n"),
                        sa.func.max(sa.case((_X.c.user_id == _b("me"), 1), else_=0)).label("mine"))
              .where(_X.c.target.in_(_b("targets", expanding=True)))
              .group_by(_X.c.target, _X.c.key).order_by(_X.c.target, _X.c.key))
_HAS_REACTION = sa.select(_X.c.event_id).where(_X.c.target == _b("target"), _X.c.key == _b("key"),
                                               _X.c.user_id == _b("user_id"))

_D = content_drafts
_DRAFT = sa.select(*_D.c).where(_D.c.draft_id == _b("draft_id"), _D.c.user_id == _b("user_id"))
_DRAFTS = (sa.select(*_D.c).where(_D.c.user_id == _b("user_id"), _D.c.published_event_id.is_(None))
           .order_by(_D.c.updated_ts.desc()))
_F = content_follows
_FOLLOWS = sa.select(_F.c.service_id, _F.c.followee).where(_F.c.user_id == _b("user_id")).order_by(
    _F.c.service_id, _F.c.created_ts)
_P = content_presents
_PRESENT = sa.select(*_P.c).where(_P.c.present_id == _b("present_id"))
_PRESENTS = (sa.select(*_P.c).where(sa.not_(_P.c.removed),
                                    sa.or_(_P.c.service_id.is_(None), _P.c.service_id == _b("service_id")))
             .order_by(_P.c.created_ts, _P.c.present_id))


class ContentStore:
    """Reads and small writes of the content tables over one ``Database``."""

    def __init__(self, db: Any) -> None:
        self._w = db.engine
        self._r = db.read_engine
        insert = insert_for(db.dialect)
        self.add_reaction = insert(_X).on_conflict_do_nothing(index_elements=[_X.c.target, _X.c.key, _X.c.user_id])
        """Derived-row statement: a reaction (a repeated one is a no-op, never an error)."""
        self._follow = insert(_F).on_conflict_do_nothing(
            index_elements=[_F.c.user_id, _F.c.service_id, _F.c.followee])

    async def _all(self, stmt: Any, params: Dict[str, Any]) -> List[Any]:
        async with self._r.connect() as conn:
            return list(await conn.execute(stmt, params))

    # -- events and items ------------------------------------------------------------------
    async def event_meta(self, event_id: str) -> Optional[Any]:
        """``(room_id, type, state_key, sender)`` of a stored event, or None."""
        rows = await self._all(_EVENT_BY_ID, {"event_id": event_id})
        return rows[0] if rows else None

    async def item(self, event_id: str) -> Optional[Any]:
        """The content_items row of a top-level post, or None."""
        rows = await self._all(_ITEM_BY_ID, {"event_id": event_id})
        return rows[0] if rows else None

    async def events_json(self, ids: Iterable[str]) -> Dict[str, Tuple[Dict[str, Any], int]]:
        """event_id -> (federation-form event dict, pos) for the given IDs."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = await self._all(_EVENTS_BY_ID, {"ids": wanted})
        return {r.event_id: (decode_stored(r.json), r.pos) for r in rows}

    async def threads(self, room_id: str, thread_type: str, before: Optional[int], limit: int,
                      max_pinned: int = 50) -> Tuple[List[Any], List[Any]]:
        """(pinned threads if first page, page of unpinned threads) by latest activity."""
        pinned = [] if before is not None else await self._all(
            _THREADS_PINNED, {"room_id": room_id, "type": thread_type, "limit": max_pinned})
        rest = await self._all(_THREADS, {"room_id": room_id, "type": thread_type,
                                          "before": BIGINT_MAX if before is None else before, "limit": limit})
        return pinned, rest

    async def items_in_rooms(self, room_ids: Sequence[str], types: Sequence[str], before: Optional[int],
                             limit: int) -> List[Any]:
        """Items of ``types`` in any of ``room_ids`` with pos < before, newest first."""
        if not room_ids:
            return []
        return await self._all(_ITEMS_IN_ROOMS, {"room_ids": list(room_ids), "types": list(types),
                                                 "before": BIGINT_MAX if before is None else before,
                                                 "limit": limit})

    async def related(self, parent_id: str, rel: str, after: Optional[int], limit: int) -> List[Any]:
        """Events related to ``parent_id`` by ``rel`` with pos > after, oldest first."""
        return await self._all(_RELATED, {"parent_id": parent_id, "rel": rel,
                                           "after": -1 if after is None else after, "limit": limit})

    async def reactions(self, targets: Iterable[str], me: str) -> Dict[str, List[Dict[str, Any]]]:
        """target -> [{key, count, mine}] for every target with reactions."""
        wanted = sorted(set(targets))
        out: Dict[str, List[Dict[str, Any]]] = {}
        if not wanted:
            return out
        for row in await self._all(_REACTIONS, {"targets": wanted, "me": me}):
            out.setdefault(row.target, []).append({"key": row.key, "count": int(row.n), "mine": bool(row.mine)})
        return out

    async def has_reaction(self, target: str, key: str, user_id: str) -> bool:
        """True if the user currently has reaction ``key`` on ``target``."""
        return bool(await self._all(_HAS_REACTION, {"target": target, "key": key, "user_id": user_id}))

    # -- drafts ----------------------------------------------------------------------------
    async def draft(self, draft_id: str, user_id: str) -> Optional[Any]:
        """The user's draft (published or not), or None (also for other users' drafts)."""
        rows = await self._all(_DRAFT, {"draft_id": draft_id, "user_id": user_id})
        return rows[0] if rows else None

    async def drafts(self, user_id: str) -> List[Any]:
        """The user's unpublished drafts, most recently updated first."""
        return await self._all(_DRAFTS, {"user_id": user_id})

    async def insert_draft(self, row: Dict[str, Any]) -> None:
        """Store a new draft."""
        async with self._w.begin() as conn:
            await conn.execute(_D.insert(), row)

    async def update_draft(self, draft_id: str, user_id: str, values: Dict[str, Any]) -> bool:
        """Change an unpublished draft of the user; False if there is none."""
        async with self._w.begin() as conn:
            result = await conn.execute(_D.update().where(
                _D.c.draft_id == draft_id, _D.c.user_id == user_id, _D.c.published_event_id.is_(None)
            ).values(**values))
        return bool(result.rowcount)

    async def mark_published(self, draft_id: str, user_id: str, event_id: str) -> None:
        """Record the event a draft became (it then leaves the drafts list)."""
        async with self._w.begin() as conn:
            await conn.execute(_D.update().where(_D.c.draft_id == draft_id, _D.c.user_id == user_id)
                               .values(published_event_id=event_id))

    async def delete_draft(self, draft_id: str, user_id: str) -> bool:
        """Discard an unpublished draft; False if there is none."""
        async with self._w.begin() as conn:
            result = await conn.execute(_D.delete().where(
                _D.c.draft_id == draft_id, _D.c.user_id == user_id, _D.c.published_event_id.is_(None)))
        return bool(result.rowcount)

    # -- follows ---------------------------------------------------------------------------
    async def follow(self, user_id: str, service_id: str, followee: str, now_ms: int) -> None:
        """Follow (a repeat is a no-op)."""
        async with self._w.begin() as conn:
            await conn.execute(self._follow, {"user_id": user_id, "service_id": service_id,
                                              "followee": followee, "created_ts": now_ms})

    async def unfollow(self, user_id: str, service_id: str, followee: str) -> bool:
        """Stop following; False if not following."""
        async with self._w.begin() as conn:
            result = await conn.execute(_F.delete().where(
                _F.c.user_id == user_id, _F.c.service_id == service_id, _F.c.followee == followee))
        return bool(result.rowcount)

    async def follows(self, user_id: str) -> List[Tuple[str, str]]:
        """(service_id, followee) pairs, oldest follow first per service."""
        return [(r.service_id, r.followee) for r in await self._all(_FOLLOWS, {"user_id": user_id})]

    # -- presents catalogue ----------------------------------------------------------------
    async def present(self, present_id: str) -> Optional[Any]:
        """A catalogue entry (also withdrawn ones), or None."""
        rows = await self._all(_PRESENT, {"present_id": present_id})
        return rows[0] if rows else None

    async def presents(self, service_id: Optional[str]) -> List[Any]:
        """Server-wide presents and, given a service, that service's own."""
        return await self._all(_PRESENTS, {"service_id": service_id or ""})

    async def add_present(self, row: Dict[str, Any]) -> None:
        """Add a catalogue entry."""
        async with self._w.begin() as conn:
            await conn.execute(_P.insert(), row)

    async def remove_present(self, present_id: str) -> None:
        """Withdraw a catalogue entry (kept so past presents still resolve)."""
        async with self._w.begin() as conn:
            await conn.execute(_P.update().where(_P.c.present_id == present_id).values(removed=True))
