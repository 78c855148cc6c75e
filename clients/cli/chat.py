"""``sharon chat``: the interactive terminal chat on Textual.

One asyncio loop runs everything: ``clients.runtime`` installs Twisted's asyncio reactor on
the loop, then ``sharon chat`` awaits ``ChatApp.run_async()`` on that same loop, so the
autobahn connection and Textual's message pumps are plain tasks side by side (no threads,
no second loop). ``reactor.running`` is set by ``install_reactor`` (see clients/runtime.py);
the reactor never owns the loop, Textual does not need it to.

Layout: rooms on the left (``●`` marks unread), the open room's log on the right (history
on open, older pages when scrolling to the top or with Ctrl+O), an input line with a live
``n/4000`` counter that turns yellow near the limit and red over it (and then refuses to
send). People appear only by pseudonym.

The member's controls (#6) apply as in ``sharon tail``/``history`` (``clients.cli.member_view``):
events with one of their mute words and content-warning categories they hide are left out;
blurred ones show ``content warning: CATEGORY — press Ctrl+R to show`` until Ctrl+R (which
toggles). When a moderator puts a content warning on an event of the open room, the room
is re-read so the preference applies to it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer, Header, Input, ListView, Static

from clients.cli import counter, render
from clients.cli.chat_widgets import MessageLog, RoomInfo, RoomItem
from clients.cli.member_view import BLUR, HIDE, MemberView, blurred_copy
from protocol.errors import SharonError

__all__ = ["ChatApp"]

PAGE = 50
MAX_LOG_ENTRIES = 2000  # events kept in the open room's log; older ones are re-read on demand
HELP = ("Commands: /join [ROOM_ID]  /leave  /help.  Keys: Ctrl+N/Ctrl+P next/previous room, Ctrl+O older messages, "
        "Ctrl+R show/blur content-warned messages, Ctrl+Q quit.")
BLUR_HINT = "press Ctrl+R to show"
CW_MARK = "ps.mod.cw"  # a moderator's content warning on an event
MOD_MARKS = (CW_MARK, "ps.mod.hide", "ps.mod.unhide", "ps.mod.redact")
"""A moderator's marks on an event shown already: the open room is re-read (history applies them)."""


class ChatApp(App):
    """The chat UI for one connected, authenticated ``SharonClient``."""

    TITLE = "SHaRON"
    CSS = """
    #rooms { width: 30; border-right: solid $primary; }
    #main { width: 1fr; }
    #title { height: 1; background: $boost; padding: 0 1; }
    #log { height: 1fr; padding: 0 1; }
    #log .notice { color: $text-muted; }
    #compose { height: 3; }
    #input { width: 1fr; }
    #input.-over { border: tall $error; }
    #counter { width: 12; height: 3; content-align: right middle; padding: 0 1; }
    #counter.-warn { color: $warning; }
    #counter.-over { color: $error; text-style: bold; }
    #status { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [
        Binding("ctrl+n", "next_room(1)", "Next room", priority=True),
        Binding("ctrl+p", "next_room(-1)", "Previous room", priority=True),
        Binding("ctrl+o", "older", "Older messages", priority=True),
        Binding("ctrl+r", "toggle_cw", "Show/blur warned", priority=True),
    ]

    def __init__(self, client: Any, open_room: Optional[str] = None) -> None:
        """``client`` is connected and authenticated; ``open_room`` (room ID or name) opens first."""
        super().__init__()
        self.client = client
        self.open_room_hint = open_room
        self.rooms: Dict[str, RoomInfo] = {}
        self.current: Optional[str] = None
        self.older_from: Optional[int] = None  # history ``next`` of the open room; None: no more
        self.status = ""
        self.last_signpost: Optional[Dict[str, Any]] = None  # the crisis lines last pushed (#6)
        self.counter_text = counter.count("").label()
        self.limits: Dict[str, int] = {}  # published body limit per room (``limits`` op)
        self._loading_older = False
        self._change = asyncio.Event()
        self.view = MemberView()  # the member's mute words and content-warning preferences
        self.reveal = False  # Ctrl+R: show blurred events

    # -- composition -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        with Horizontal():
            yield ListView(id="rooms")
            with Vertical(id="main"):
                yield Static("", id="title", markup=False)
                yield MessageLog(id="log")
                with Horizontal(id="compose"):
                    yield Input(placeholder="Write a message (Enter sends, /help)", id="input")
                    yield Static(counter.count("").label(), id="counter", markup=False)
                yield Static("", id="status", markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = render.clean(self.client.pseudonym or "")
        self.query_one("#input", Input).focus()
        await self._reload_rooms()
        self.view = await MemberView.fetch(self.client)
        await self.client.sync()
        self._pump_events()
        self._pump_frames()
        first = self._find_room(self.open_room_hint) if self.open_room_hint else None
        if first is None and self.rooms:
            first = next(iter(self.rooms))
        if first is not None:
            await self.open_room(first)
        else:
            await self.log_widget.reset("You are in no rooms yet. Join one with /join ROOM_ID.")
        self._changed()

    # -- change notification (lets tests wait on state instead of sleeping) -----------------

    def _changed(self) -> None:
        event, self._change = self._change, asyncio.Event()
        event.set()

    async def wait_until(self, predicate: Any, timeout_s: float = 10.0) -> None:
        """Wait up to ``timeout_s`` seconds until ``predicate()`` is true, re-checking on each UI change."""

        async def loop() -> None:
            while not predicate():
                await self._change.wait()

        try:
            await asyncio.wait_for(loop(), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            recent = self.log_widget.lines()[-3:] if self.is_running else []
            raise TimeoutError(
                f"condition not met within {timeout_s} s (room {self.current}, status {self.status!r}, last lines {recent})"
            ) from None

    # -- rooms -----------------------------------------------------------------------------

    @property
    def log_widget(self) -> MessageLog:
        """The message log of the open room."""
        return self.query_one("#log", MessageLog)

    def _find_room(self, hint: str) -> Optional[str]:
        if hint in self.rooms:
            return hint
        for room_id, info in self.rooms.items():
            if info.name.casefold() == hint.casefold():
                return room_id
        return None

    async def _reload_rooms(self) -> None:
        summaries = await self.client.rooms()
        fresh: Dict[str, RoomInfo] = {}
        for summary in summaries:
            info = RoomInfo.from_summary(summary)
            old = self.rooms.get(info.room_id)
            if old is not None:
                info.unread = old.unread
            fresh[info.room_id] = info
        self.rooms = fresh
        view = self.query_one("#rooms", ListView)
        await view.clear()
        await view.extend(RoomItem(info) for info in fresh.values())
        self._highlight_current()
        self._changed()

    def _highlight_current(self) -> None:
        ids = list(self.rooms)
        if self.current in ids:
            self.query_one("#rooms", ListView).index = ids.index(self.current)

    def _refresh_room_item(self, room_id: str) -> None:
        for item in self.query(RoomItem):
            if item.info.room_id == room_id:
                item.refresh_label()

    @on(ListView.Selected, "#rooms")
    async def _room_selected(self, message: ListView.Selected) -> None:
        if isinstance(message.item, RoomItem):
            await self.open_room(message.item.info.room_id)
            self.query_one("#input", Input).focus()

    async def action_next_room(self, step: int) -> None:
        """Open the next (``step`` 1) or previous (-1) room in the list."""
        ids = list(self.rooms)
        if not ids:
            return
        i = ids.index(self.current) if self.current in ids else -step
        await self.open_room(ids[(i + step) % len(ids)])

    async def open_room(self, room_id: str) -> None:
        """Show ``room_id``: clear its unread count and load its latest page of history."""
        info = self.rooms.get(room_id)
        if info is None:
            return
        self.current = room_id
        self.older_from = None
        info.unread = 0
        self._refresh_room_item(room_id)
        self._highlight_current()
        title = f"{info.name} \u2014 {info.topic}" if info.topic else info.name
        self.query_one("#title", Static).update(f"{title}  ({info.kind}, {info.members} members)")
        if info.notice:
            self._set_status(info.notice)  # the moderation notice (#5)
        log = self.log_widget
        if info.membership == "invite":
            await log.reset("You are invited to this room. Type /join to join it.")
            self._changed()
            return
        await log.reset()
        if room_id not in self.limits:
            self.limits[room_id] = await counter.room_limit(self.client, room_id)
            self._show_counter(self.query_one("#input", Input).value)
        await self._load_page(room_id, before=None)

    def _limit(self) -> int:
        """The open room's published body limit (the default until it is known)."""
        return self.limits.get(self.current or "", counter.MAX_BODY_CHARS)

    async def _load_page(self, room_id: str, before: Optional[int]) -> None:
        try:
            page = await self.client.history(room_id, dir="b", from_pos=before, limit=PAGE)
        except SharonError as e:
            self._set_status(f"{e.code}: {e.reason}")
            return
        if self.current != room_id:
            return  # the user moved on while the page was loading
        self.older_from = page.get("next")
        await self.log_widget.add_events(self._viewed(page["events"]), self.client.user_id)
        self._changed()

    def _viewed(self, events: Any) -> list:
        """``events`` as this member's controls show them: hidden ones left out, blurred ones
        replaced by a content-warning line (unless revealed with Ctrl+R)."""
        out = []
        for event in events:
            verdict = self.view.verdict(event)
            if verdict == HIDE:
                continue
            if verdict == BLUR and not self.reveal:
                event = blurred_copy(event, BLUR_HINT)
            out.append(event)
        return out

    async def action_toggle_cw(self) -> None:
        """Show (or blur again) the content-warned events of the open room."""
        self.reveal = not self.reveal
        self._set_status("Showing content-warned messages (Ctrl+R blurs them again)." if self.reveal
                         else "Content-warned messages are blurred (Ctrl+R shows them).")
        if self.current is not None:
            await self.open_room(self.current)

    @on(MessageLog.ReachedTop)
    async def _reached_top(self, message: MessageLog.ReachedTop) -> None:
        if self.log_widget.at_top:  # still there (the message may be stale after a room switch)
            await self.action_older()

    async def action_older(self) -> None:
        """Load the page before the oldest event shown, if there is one."""
        if self.current is None or self.older_from is None or self._loading_older:
            return
        self._loading_older = True
        try:
            await self._load_page(self.current, before=self.older_from)
        finally:
            self._loading_older = False

    # -- live events -----------------------------------------------------------------------

    @work(exclusive=True, group="events")
    async def _pump_events(self) -> None:
        """Show every pushed event as it arrives; on connection loss, reconnect and resume."""
        while True:
            try:
                event = await self.client.next_event(timeout_s=None)
            except ConnectionError as e:
                self._set_status(f"{e}; reconnecting\u2026")
                await self._reconnect()
                continue
            try:
                await self._on_event(event)
            except (SharonError, TimeoutError) as e:
                self._set_status(_describe_error(e))
            except NoMatches:
                return  # the app is closing and its widgets are gone

    @work(exclusive=True, group="frames")
    async def _pump_frames(self) -> None:
        """Read pushed frames (typing, notices...) so they never pile up, and show the ones
        that tell this member something (#6) in the status line."""
        while True:
            client = self.client
            try:
                frame = await client.next_frame(timeout_s=None)
            except ConnectionError:
                while self.client is client:  # _pump_events reconnects; then read the new one
                    await asyncio.sleep(0.5)
                continue
            if frame.get("op") == "moderation" and frame.get("type") in MOD_MARKS and frame.get("room_id") == self.current:
                try:
                    await self.open_room(self.current)  # an observer-less mark: re-read the open room
                except NoMatches:
                    return  # the app is closing and its widgets are gone
                continue
            text = _notice_of(frame)
            if text:
                if frame.get("op") == "signpost":
                    self.last_signpost = frame
                self._set_status(text)

    async def _on_event(self, event: Dict[str, Any]) -> None:
        room_id = event.get("room_id")
        concerns_me = event.get("type") == "m.room.member" and event.get("state_key") == self.client.user_id
        if room_id not in self.rooms or concerns_me:
            await self._reload_rooms()
        if room_id == self.current and event.get("type") in MOD_MARKS:
            await self.open_room(room_id)  # re-read: the mark now applies to an event shown
        elif room_id == self.current:
            log = self.log_widget
            await log.add_events(self._viewed([event]), self.client.user_id)
            if await log.trim(MAX_LOG_ENTRIES):
                self.older_from = log.positions[0]  # the trimmed events come back a page at a time
        elif room_id in self.rooms and render.is_message(event) and self.view.verdict(event) != HIDE:
            self.rooms[room_id].unread += 1
            self._refresh_room_item(room_id)
        self._changed()

    async def _reconnect(self) -> None:
        old = self.client
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                fresh = await type(old).connect(old.url, encoding=old.encoding)
                await fresh.auth(old.token)
                await fresh.sync(since=old.last_pos)
            except (ConnectionError, OSError, TimeoutError):
                delay = min(delay * 2, 10.0)
                continue
            except SharonError as e:
                await fresh.close()
                self._set_status(f"cannot resume: {e.code}: {e.reason}. Quit and run `sharon login`.")
                await asyncio.Event().wait()  # nothing more to do; the user quits
            self.client = fresh
            self.view = await MemberView.fetch(fresh)  # controls changed elsewhere meanwhile apply now
            self._set_status("reconnected")
            return

    # -- composing -------------------------------------------------------------------------

    @on(Input.Changed, "#input")
    def _draft_changed(self, message: Input.Changed) -> None:
        self._show_counter(message.value)

    def _show_counter(self, text: str) -> None:
        state = counter.count(text, self._limit())
        label = self.query_one("#counter", Static)
        label.update(state.label())
        label.set_class(state.state is counter.CounterState.WARN, "-warn")
        label.set_class(state.state is counter.CounterState.OVER, "-over")
        self.query_one("#input", Input).set_class(state.state is counter.CounterState.OVER, "-over")
        self.counter_text = state.label()
        self._changed()

    @on(Input.Submitted, "#input")
    async def _submit(self, message: Input.Submitted) -> None:
        text = message.value
        if text.startswith("/"):
            message.input.value = ""
            await self._command(text)
            return
        state = counter.count(text, self._limit())
        if state.state is counter.CounterState.EMPTY:
            return
        if state.state is counter.CounterState.OVER:
            self.bell()
            self._set_status(f"Too long: {state.chars} characters, the limit is {state.limit}. Shorten it to send.")
            return
        if self.current is None or self.rooms[self.current].membership != "join":
            self._set_status("Open a room you have joined first.")
            return
        message.input.value = ""
        self._send(self.current, text)

    @work(group="send")
    async def _send(self, room_id: str, text: str) -> None:
        """Send in a worker so a slow server never freezes the keyboard; the echo shows it."""
        try:
            self.last_signpost = None
            result = await self.client.send(room_id, text)
            if result.get("held"):  # pre-moderation or out of hours: no echo will come
                held = "Held for review: " + render.clean(result.get("notice") or "")
                sign = self.last_signpost  # pushed before the reply: crisis lines stay in view
                self._set_status(held + (" " + _notice_of(sign) if sign else ""))
        except (SharonError, ConnectionError, TimeoutError) as e:
            field = self.query_one("#input", Input)
            if not field.value:
                field.value = text  # give the draft back
            self._set_status(_describe_error(e))

    async def _command(self, text: str) -> None:
        verb, _, arg = text.partition(" ")
        arg = arg.strip()
        try:
            if verb == "/join":
                room_id = arg or self.current
                if not room_id:
                    self._set_status("Usage: /join ROOM_ID")
                    return
                await self.client.join(room_id)
                await self._reload_rooms()
                await self.open_room(room_id)
            elif verb == "/leave" and self.current:
                await self.client.leave(self.current)
                self.current = None
                await self._reload_rooms()
                if self.rooms:
                    await self.open_room(next(iter(self.rooms)))
                else:
                    await self.log_widget.reset("You are in no rooms now.")
            else:
                self._set_status(HELP)
        except (SharonError, ConnectionError, TimeoutError) as e:
            self._set_status(_describe_error(e))

    def _set_status(self, text: str) -> None:
        self.status = text
        self.query_one("#status", Static).update(text)
        self._changed()


def _notice_of(frame: Optional[Dict[str, Any]]) -> str:
    """The one-line status text of a pushed notice to this member, or "" for other frames."""
    from clients.cli.main import notice_of
    return notice_of(frame)


def _describe_error(error: BaseException) -> str:
    if isinstance(error, SharonError):
        suffix = f" (field: {error.field})" if error.field else ""
        return f"{error.code}: {error.reason}{suffix}"
    return str(error) or type(error).__name__
