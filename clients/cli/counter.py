"""The message character counter shared by ``sharon send`` and the chat input line."""

from __future__ import annotations

import enum
from typing import Any

import attr

from protocol.errors import SharonError

__all__ = ["MAX_BODY_CHARS", "WARN_FRACTION", "CounterState", "Counter", "count", "room_limit"]

MAX_BODY_CHARS = 4000
"""The server's default ``max_body_chars`` (docs/protocol.md §3.3): the fallback when the
server's published limit (the ``limits`` op, docs/protocol.md §8.1) cannot be read."""

WARN_FRACTION = 0.9
"""Show the counter as a warning from this fraction of the limit on."""


class CounterState(enum.Enum):
    """How the counter should look."""

    EMPTY = "empty"  # nothing to send
    OK = "ok"
    WARN = "warn"  # near the limit
    OVER = "over"  # the server would refuse it: do not send


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Counter:
    """The length of a draft against the limit, in characters (Unicode code points)."""

    chars: int
    limit: int

    @property
    def state(self) -> CounterState:
        """EMPTY, OK, WARN (at or above WARN_FRACTION of the limit) or OVER."""
        if self.chars == 0:
            return CounterState.EMPTY
        if self.chars > self.limit:
            return CounterState.OVER
        if self.chars >= self.limit * WARN_FRACTION:
            return CounterState.WARN
        return CounterState.OK

    @property
    def sendable(self) -> bool:
        """True when the draft is 1..limit characters."""
        return self.state in (CounterState.OK, CounterState.WARN)

    def label(self) -> str:
        """``n/limit`` as shown next to the input."""
        return f"{self.chars}/{self.limit}"


def count(text: str, limit: int = MAX_BODY_CHARS) -> Counter:
    """Count ``text`` the way the server does: code points, as Python's ``len``."""
    return Counter(len(text), limit)


async def room_limit(client: Any, room_id: str) -> int:
    """The body limit the server publishes for ``room_id`` (``limits`` op), in characters.

    Falls back to MAX_BODY_CHARS when the server cannot say (an older server, or a room the
    caller cannot see): the server still enforces its own limit on send.
    """
    try:
        limit = (await client.request("limits", room_id=room_id)).get("max_body_chars")
    except SharonError:
        return MAX_BODY_CHARS
    return limit if type(limit) is int and limit > 0 else MAX_BODY_CHARS
