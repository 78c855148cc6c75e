"""Widgets of the chat TUI: the room list entries and the scroll-back message log."""

from __future__ import annotations

import bisect
from typing import Any, Dict, Iterable, List, Optional, Tuple

import attr
from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.widgets import Label, ListItem, Static
from textual.containers import VerticalScroll

from clients.cli import render

__all__ = ["RoomInfo", "RoomItem", "MessageLog", "event_text"]


@attr.s(slots=True, auto_attribs=True)
class RoomInfo:
    """What the room list knows about one room (from the ``rooms`` summary plus live counts)."""

    room_id: str
    name: str
    kind: str
    membership: str
    members: int = 0
    topic: Optional[str] = None
    unread: int = 0
    notice: Optional[str] = None
    """The room's moderation notice (#5), shown when the room is opened."""

    @classmethod
    def from_summary(cls, summary: Dict[str, Any]) -> "RoomInfo":
        """Build from one entry of the ``rooms`` reply."""
        return cls(
            room_id=summary["room_id"],
            name=render.clean(summary.get("name") or summary.get("kind") or "room"),
            kind=render.clean(summary.get("kind")),
            membership=render.clean(summary.get("membership")),
            members=summary.get("members") if type(summary.get("members")) is int else 0,
            topic=render.clean(summary["topic"]) if summary.get("topic") else None,
            notice=render.clean(summary["moderation_notice"]) if summary.get("moderation_notice") else None,
        )

    def label(self) -> Text:
        """The room list line: unread marker, name, unread count, invite note."""
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("\u25cf " if self.unread else "  ", style="bold yellow")
        text.append(self.name, style="bold" if self.unread else "")
        if self.unread:
            text.append(f" ({self.unread})", style="yellow")
        if self.membership == "invite":
            text.append(" (invited)", style="italic dim")
        return text


class RoomItem(ListItem):
    """One room in the room list."""

    def __init__(self, info: RoomInfo) -> None:
        super().__init__(Label(info.label(), markup=False))
        self.info = info

    def refresh_label(self) -> None:
        """Redraw after ``info`` changed."""
        self.query_one(Label).update(self.info.label())


def event_text(event: Dict[str, Any], own_user_id: Optional[str]) -> Optional[Text]:
    """How the log shows ``event`` (a Rich Text, never markup), or None to skip it."""
    stamp = f"[{render.format_time(event.get('origin_server_ts'))}] "
    if render.is_message(event):
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        own = own_user_id is not None and event.get("sender") == own_user_id
        text = Text(stamp, style="dim")
        text.append(render.clean(event.get("sender_pseudonym") or "someone"), style="bold green" if own else "bold cyan")
        text.append(": ")
        text.append(render.clean(content.get("body"), one_line=False))
        return text
    what = render.describe(event)
    if what is None:
        return None
    return Text(f"{stamp}* {what}", style="dim italic")


class MessageLog(VerticalScroll):
    """The events of one room in ``pos`` order, each once, whatever order they arrive in."""

    class ReachedTop(Message):
        """The user scrolled to the top: time to load an older page."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.positions: List[int] = []
        self.notice: Optional[str] = None
        self.following = True  # at the bottom: new messages scroll into view
        self._shift: Optional[Tuple[int, float]] = None  # (height, scroll_y) to restore after a prepend

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._shift is None:
            self.following = new_value >= self.max_scroll_y
        if new_value <= 0 < old_value:
            self.post_message(self.ReachedTop())

    def watch_virtual_size(self, old_size: Size, new_size: Size) -> None:
        """Content grew or shrank: keep a follower at the bottom, or a reader on the lines they were reading."""
        if self._shift is not None:
            height_before, y_before = self._shift
            self._shift = None
            self.scroll_to(y=y_before + new_size.height - height_before, animate=False, immediate=True)
        elif self.following:
            self.scroll_end(animate=False, immediate=True)

    @property
    def at_top(self) -> bool:
        """True when scrolled to the very top of content taller than the view."""
        return self.scroll_y <= 0 < self.max_scroll_y

    async def reset(self, notice: Optional[str] = None) -> None:
        """Empty the log (switching rooms); ``notice`` is shown in place of messages."""
        await self.remove_children()
        self.positions = []
        self.notice = notice
        if notice:
            await self.mount(Static(Text(notice, style="italic"), classes="notice"))
        self.following = True
        self._shift = None

    async def add_events(self, events: Iterable[Dict[str, Any]], own_user_id: Optional[str]) -> int:
        """Insert events at their ``pos``, skipping ones already shown; returns how many were added.

        A reader at the bottom stays at the bottom (new messages scroll into view); a reader
        further up keeps looking at the same lines, even when an older page lands above them.
        """
        shown = set(self.positions)
        fresh = {}
        for event in events:
            pos = event.get("pos")
            if type(pos) is int and pos not in shown:
                text = event_text(event, own_user_id)
                if text is not None:
                    fresh[pos] = text
        if not fresh:
            return 0
        if not self.following and self._shift is None and self.positions and min(fresh) < self.positions[0]:
            self._shift = (self.virtual_size.height, self.scroll_y)  # an older page lands above the reader
        offset = 1 if self.notice else 0
        for pos in sorted(fresh):
            widget = Static(fresh[pos], classes="event")
            i = bisect.bisect_left(self.positions, pos)
            if i < len(self.positions):
                await self.mount(widget, before=i + offset)
            else:
                await self.mount(widget)
            self.positions.insert(i, pos)
        return len(fresh)

    async def trim(self, max_entries: int) -> int:
        """Drop the oldest events beyond ``max_entries`` while following the bottom; returns how many."""
        excess = len(self.positions) - max_entries
        if excess <= 0 or not self.following:
            return 0
        doomed = list(self.query(".event"))[:excess]
        del self.positions[:excess]
        await self.remove_children(doomed)
        return excess

    def lines(self) -> List[str]:
        """The log as plain text, one entry per event (for tests and copy)."""
        return [_plain(child) for child in self.query(Static)]


def _plain(widget: Static) -> str:
    content = widget.content
    return content.plain if isinstance(content, Text) else str(content)
