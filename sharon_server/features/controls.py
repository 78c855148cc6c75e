"""Member controls (#6): block, mute words, content-warning preferences, take a break.

All state is in memory (loaded at start-up from ``member_blocks`` and ``member_controls``)
so the send path never reads storage; changes are written through before the reply.

- **Block**: the blocker stops receiving the blocked member's (non-state) events live (the
  hub's ``blocked_by`` filter), in history and resume replay (an event filter), and their
  notifications and mentions (a notification filter). Neither can open a new DM with the
  other nor bring the other back into one while the block lasts (the blocked member's
  refusal reads like any other DM refusal); an ongoing DM stays open.
  The blocked member is never told. Staff of a service both share, and server admins,
  cannot be blocked (``cannot_block_staff``): safety messages must get through.
- **Mute words**: notifications whose text contains one are stored but not pushed; in
  history and replay, events containing one carry ``"muted": true`` for that viewer. Live
  frames are encoded once for every receiver, so clients hide muted live events themselves
  (the CLI does, from ``mute_words``).
- **Content-warning preferences**: per category ``show`` | ``blur`` | ``hide``; in history
  and replay an event whose content warning category the viewer hides is left out, one
  they blur carries ``"blurred": true``.
- **Take a break**: notifications are stored but not pushed, and the member's typing
  indicators are not broadcast; the break ends by itself at ``until_ts``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Set, Tuple

import sqlalchemy as sa
from twisted.logger import Logger

from protocol import controls as P
from protocol.errors import BadField, CannotBlockStaff, Forbidden, NotFound, TooManyBlocks
from sharon_server.ops import register_handlers
from sharon_server.storage.schema_safety_controls import member_blocks, member_controls

__all__ = ["install", "Controls"]

log = Logger(namespace="sharon.controls")

_NO_BREAK = object()


class Controls:
    """Every member's controls, in memory; ``ctx.extras["controls"]``."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.now_ms = ctx.now_ms
        self.services = ctx.services
        self.blocks: Dict[str, Set[str]] = {}
        self.blocked_by: Dict[str, Set[str]] = ctx.hub.blocked_by if hasattr(ctx.hub, "blocked_by") else {}
        self.mute: Dict[str, Tuple[List[str], "re.Pattern[str]"]] = {}
        self.cw: Dict[str, Dict[str, str]] = {}
        self.breaks: Dict[str, Optional[int]] = {}

    # -- loading ------------------------------------------------------------------------
    async def load(self) -> None:
        async with self.db.read_engine.connect() as conn:
            rows = list(await conn.execute(sa.select(member_blocks.c.user_id, member_blocks.c.blocked_id)))
            controls = list(await conn.execute(sa.select(member_controls)))
        self.blocks.clear()
        self.blocked_by.clear()
        for row in rows:
            self._add_block(row.user_id, row.blocked_id)
        self.mute.clear(); self.cw.clear(); self.breaks.clear()
        for row in controls:
            self._apply(row.user_id, json.loads(row.mute_words), json.loads(row.cw_prefs),
                        bool(row.break_on), row.break_until)
        log.info("controls.loaded", blocks=len(rows), members=len(controls))

    def _add_block(self, user_id: str, blocked: str) -> None:
        self.blocks.setdefault(user_id, set()).add(blocked)
        self.blocked_by.setdefault(blocked, set()).add(user_id)

    def _remove_block(self, user_id: str, blocked: str) -> None:
        mine = self.blocks.get(user_id)
        if mine is not None:
            mine.discard(blocked)
            if not mine:
                del self.blocks[user_id]
        theirs = self.blocked_by.get(blocked)
        if theirs is not None:
            theirs.discard(user_id)
            if not theirs:
                del self.blocked_by[blocked]  # keeps hub.blocked_by empty when nobody blocks

    def _apply(self, user_id: str, words: List[str], cw: Dict[str, str], on: bool,
               until: Optional[int]) -> None:
        pattern = P.mute_pattern(words)
        if pattern is not None:
            self.mute[user_id] = (list(words), pattern)
        else:
            self.mute.pop(user_id, None)
        cw = {k: v for k, v in cw.items() if v != "show"}
        if cw:
            self.cw[user_id] = cw
        else:
            self.cw.pop(user_id, None)
        if on:
            self.breaks[user_id] = until
        else:
            self.breaks.pop(user_id, None)

    async def update(self, user_id: str, words: Optional[List[str]] = None, cw: Optional[Dict[str, str]] = None,
                     brk: Optional[Tuple[bool, Optional[int]]] = None) -> None:
        """Replace some of a member's controls (None: keep what they have): mute words,
        content-warning preferences, the break as (on, until_ts); then save them all."""
        on, until = brk if brk is not None else (user_id in self.breaks, self.breaks.get(user_id))
        self._apply(user_id, list(self.mute.get(user_id, ([], None))[0]) if words is None else words,
                    self.cw.get(user_id, {}) if cw is None else cw, on, until)
        await self._save(user_id)

    # -- queries ------------------------------------------------------------------------
    def is_blocked(self, user_id: str, other: str) -> bool:
        """True if ``user_id`` blocks ``other``."""
        mine = self.blocks.get(user_id)
        return bool(mine) and other in mine

    def on_break(self, user_id: str) -> bool:
        """True while the member's break lasts (a break past its ``until_ts`` has ended)."""
        until = self.breaks.get(user_id, _NO_BREAK)
        if until is _NO_BREAK:
            return False
        return until is None or self.now_ms() < until  # type: ignore[operator]

    def break_state(self, user_id: str) -> Dict[str, Any]:
        on = self.on_break(user_id)
        return {"on": on, "until_ts": self.breaks.get(user_id) if on else None}

    def muted(self, user_id: str, texts: List[str]) -> bool:
        entry = self.mute.get(user_id)
        if entry is None:
            return False
        pattern = entry[1]
        return any(type(t) is str and pattern.search(t) for t in texts)

    # -- hooks --------------------------------------------------------------------------
    def notify_filter(self, row: Dict[str, Any], texts: List[str]) -> Optional[str]:
        """Notification filter: drop what blocked members cause; quiet mutes and breaks."""
        user_id = row["user_id"]
        if self.is_blocked(user_id, row.get("actor", "")):
            return "drop"
        if self.on_break(user_id) or self.muted(user_id, texts):
            return "quiet"
        return None

    def event_filter(self, viewer: str, room_id: str, event: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """History/replay filter: leave out blocked members' events and hidden CW categories;
        mark muted and blurred ones."""
        if viewer not in self.blocks and viewer not in self.mute and viewer not in self.cw:
            return event
        if "state_key" in event:
            return event
        if self.is_blocked(viewer, event.get("sender", "")):
            return None
        prefs = self.cw.get(viewer)
        if prefs:
            category = P.cw_category(event)
            choice = prefs.get(category) if category else None
            if choice == "hide":
                return None
            if choice == "blur":
                event = dict(event, blurred=True)
        entry = self.mute.get(viewer)
        if entry is not None:
            content = event.get("content") or {}
            texts = [content.get("title"), content.get("body")]
            if any(type(t) is str and entry[1].search(t) for t in texts):
                event = dict(event, muted=True)
        return event

    # -- writes -------------------------------------------------------------------------
    async def _save(self, user_id: str) -> None:
        """Write the member's mute words, CW preferences and break (portable upsert)."""
        t = member_controls
        words = self.mute.get(user_id, ([], None))[0]
        values = {"mute_words": json.dumps(words), "cw_prefs": json.dumps(self.cw.get(user_id, {})),
                  "break_on": user_id in self.breaks, "break_until": self.breaks.get(user_id),
                  "updated_ts": self.now_ms()}
        update = t.update().where(t.c.user_id == user_id).values(**values)
        try:
            async with self.db.engine.begin() as conn:
                if not (await conn.execute(update)).rowcount:
                    await conn.execute(t.insert().values(user_id=user_id, **values))
        except sa.exc.IntegrityError:  # a concurrent first write won the insert
            async with self.db.engine.begin() as conn:
                await conn.execute(update)


def install(ctx: Any) -> None:
    """Register the controls' hooks and operations."""
    rooms, accounts, hub, services = ctx.rooms, ctx.accounts, ctx.hub, ctx.services
    controls = Controls(ctx)
    if not hasattr(hub, "blocked_by"):
        hub.blocked_by = controls.blocked_by
    ctx.extras["controls"] = controls
    ctx.extras.setdefault("notify_filters", []).append(controls.notify_filter)

    async def load() -> None:
        await controls.load()
        # last, so that it sees events as later features (moderation's CWs) decorated them
        if controls.event_filter not in rooms.event_filters:
            rooms.event_filters.append(controls.event_filter)

    ctx.add_loader(load)

    # -- DMs: a blocked member cannot open or re-enter a DM with the blocker --------------
    def dm_users(room_id: str) -> Optional[Tuple[str, str]]:
        dms = ctx.extras.get("dms")
        directory = dms.get("directory") if isinstance(dms, dict) else None
        return directory.parties(room_id) if directory is not None else None

    refusal = "you cannot open a DM with this person"

    def dm_create_guard(session: Any, kind: str, options: Dict[str, Any]) -> None:
        users = options.get("_dm_users")
        if kind != "dm" or not users or not controls.blocks:
            return
        me = session.user_id
        for other in users:
            if other == me:
                continue
            if controls.is_blocked(other, me):
                raise Forbidden(refusal, "user_id")  # the blocked side: not told why
            if controls.is_blocked(me, other):
                raise Forbidden("you block this person: unblock them first", "user_id")

    def dm_join_guard(user_id: str, room_id: str, state: Any) -> None:
        """Nobody (re-)enters a DM whose two people are blocked either way."""
        if not controls.blocks or rooms.kinds.get(room_id) != "dm":
            return
        users = dm_users(room_id)
        if users is None:
            return
        other = users[1] if users[0] == user_id else users[0]
        if controls.is_blocked(other, user_id) or controls.is_blocked(user_id, other):
            raise Forbidden(refusal, "user_id")

    rooms.create_guards.append(dm_create_guard)
    rooms.join_guards.append(dm_join_guard)

    # -- break: no typing indicators while on a break -------------------------------------
    dms = ctx.extras.get("dms")
    typing = dms.get("typing") if isinstance(dms, dict) else None
    if typing is not None:
        original_set = typing.set

        def set_typing(room_id: str, user_id: str, is_typing: bool) -> None:
            if is_typing and controls.on_break(user_id):
                is_typing = False  # stays invisible; stops any indicator already shown
            original_set(room_id, user_id, is_typing)

        typing.set = set_typing

    # -- handlers -------------------------------------------------------------------------
    def staff_shared(me: str, other: str) -> bool:
        if services is None:
            return False
        if services.is_admin(other):
            return True
        shared = set(services.services_of(me)) & set(services.services_of(other))
        return any(services.is_staff(s, other) for s in shared)

    async def block(conn: Any, req: P.Block) -> Dict[str, Any]:
        session = conn.require_session()
        me, other = session.user_id, str(req.user_id)
        if other == me:
            raise BadField("you cannot block yourself", "user_id")
        if accounts.pseudonym_of(other) is None:
            raise NotFound(f"no user {other} on this server", "user_id")
        if services is not None:
            await services.refresh_admins()
        if staff_shared(me, other):
            raise CannotBlockStaff("staff of your service cannot be blocked; you can report a "
                                   "staff member to the service instead", "user_id")
        if controls.is_blocked(me, other):
            return {"user_id": other, "blocked": True}
        if len(controls.blocks.get(me, ())) >= P.MAX_BLOCKS:
            raise TooManyBlocks(f"you already block {P.MAX_BLOCKS} members", "user_id")
        t = member_blocks
        try:
            async with ctx.db.engine.begin() as c:
                await c.execute(t.insert().values(user_id=me, blocked_id=other, ts=ctx.now_ms()))
        except sa.exc.IntegrityError:
            pass  # a concurrent identical block
        controls._add_block(me, other)  # noqa: SLF001
        log.info("controls.block", blocks=len(controls.blocks.get(me, ())))
        return {"user_id": other, "blocked": True}

    async def unblock(conn: Any, req: P.Unblock) -> Dict[str, Any]:
        session = conn.require_session()
        me, other = session.user_id, str(req.user_id)
        t = member_blocks
        async with ctx.db.engine.begin() as c:
            await c.execute(t.delete().where(t.c.user_id == me, t.c.blocked_id == other))
        controls._remove_block(me, other)  # noqa: SLF001
        return {"user_id": other, "blocked": False}

    def block_list(me: str) -> List[Dict[str, str]]:
        return [{"user_id": u, "pseudonym": accounts.pseudonym_of(u) or ""}
                for u in sorted(controls.blocks.get(me, ()))]

    async def blocks(conn: Any, req: P.Blocks) -> Dict[str, Any]:
        return {"blocks": block_list(conn.require_session().user_id)}

    def words_of(me: str) -> List[str]:
        return list(controls.mute.get(me, ([], None))[0])

    def cw_of(me: str) -> Dict[str, str]:
        mine = controls.cw.get(me, {})
        return {c: mine.get(c, "show") for c in P.CW_CATEGORIES}

    async def mute_words_set(conn: Any, req: P.MuteWordsSet) -> Dict[str, Any]:
        me = conn.require_session().user_id
        await controls.update(me, words=list(req.words))
        return {"words": words_of(me)}

    async def mute_words(conn: Any, req: P.MuteWords) -> Dict[str, Any]:
        return {"words": words_of(conn.require_session().user_id)}

    async def cw_prefs_set(conn: Any, req: P.CwPrefsSet) -> Dict[str, Any]:
        me = conn.require_session().user_id
        merged = dict(controls.cw.get(me, {}))
        merged.update(req.categories)
        await controls.update(me, cw=merged)
        return {"categories": cw_of(me)}

    async def cw_prefs(conn: Any, req: P.CwPrefs) -> Dict[str, Any]:
        return {"categories": cw_of(conn.require_session().user_id)}

    async def break_set(conn: Any, req: P.BreakSet) -> Dict[str, Any]:
        me = conn.require_session().user_id
        until = req.until_ts
        if req.on and until is not None:
            now = ctx.now_ms()
            if until <= now:
                raise BadField("until_ts must be in the future", "until_ts")
            if until - now > P.MAX_BREAK_MS:
                raise BadField("a break lasts at most 90 days", "until_ts")
        if not req.on:
            until = None
        await controls.update(me, brk=(req.on, until))
        if req.on:
            typing = (ctx.extras.get("dms") or {}).get("typing")
            if typing is not None:
                for room_id in list(rooms.joined_rooms(me)):
                    typing.stop(room_id, me)
        log.info("controls.break", on=req.on, timed=until is not None)
        return controls.break_state(me)

    async def all_controls(conn: Any, req: P.Controls) -> Dict[str, Any]:
        me = conn.require_session().user_id
        return {"blocks": block_list(me), "mute_words": words_of(me), "cw_prefs": cw_of(me),
                "break": controls.break_state(me)}

    register_handlers({
        P.Block: block, P.Unblock: unblock, P.Blocks: blocks,
        P.MuteWordsSet: mute_words_set, P.MuteWords: mute_words,
        P.CwPrefsSet: cw_prefs_set, P.CwPrefs: cw_prefs,
        P.BreakSet: break_set, P.Controls: all_controls,
    })
