"""Turning client events into safe one-line text for terminals (used by the CLI and the chat TUI).

Only pseudonyms are ever shown for people. Text from other users is stripped of terminal
control characters and bidirectional overrides, so a message cannot move the cursor, change
colours or disguise itself as something else.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Dict, Optional

__all__ = ["clean", "format_time", "is_message", "describe", "message_line", "event_line", "event_json"]

MESSAGE = "m.room.message"

# C0 and C1 controls (newline and tab handled first), DEL, bidi embeddings/overrides/isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: Any, *, one_line: bool = True) -> str:
    """``text`` as a safe string: controls become U+FFFD; newlines become `` ⏎ `` when ``one_line``."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text.replace("\r\n", "\n").replace("\t", " ")
    if one_line:
        text = text.replace("\n", " \u23ce ")
        return _UNSAFE.sub("\ufffd", text)
    return "\n".join(_UNSAFE.sub("\ufffd", part) for part in text.split("\n"))


def format_time(ts_ms: Any) -> str:
    """``HH:MM`` in local time for a timestamp in milliseconds since the epoch (``--:--`` if absent)."""
    if type(ts_ms) is not int:
        return "--:--"
    return time.strftime("%H:%M", time.localtime(ts_ms / 1000))


def _pseudonym(event: Dict[str, Any]) -> str:
    return clean(event.get("sender_pseudonym") or "someone")


def is_message(event: Dict[str, Any]) -> bool:
    """True for a text message event."""
    return event.get("type") == MESSAGE


def describe(event: Dict[str, Any]) -> Optional[str]:
    """What a state event means in words (``quiet-heron joined``), or None for uninteresting ones."""
    kind = event.get("type")
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    who = _pseudonym(event)
    if kind == "m.room.member":
        target = clean(content.get("pseudonym") or "someone")
        membership = content.get("membership")
        own = event.get("sender") == event.get("state_key")
        if membership == "join":
            return f"{target} joined"
        if membership == "leave":
            return f"{target} left" if own else f"{who} removed {target}"
        if membership == "invite":
            return f"{who} invited {target}"
        if membership == "ban":
            return f"{who} banned {target}"
        return None
    if kind == "m.room.create":
        return f"{who} created the room"
    if kind == "m.room.name":
        return f"{who} named the room \u201c{clean(content.get('name'))}\u201d"
    if kind == "m.room.topic":
        return f"{who} set the topic to \u201c{clean(content.get('topic'))}\u201d"
    return None


def message_line(event: Dict[str, Any]) -> str:
    """``[HH:MM] pseudonym: body`` for a message event."""
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    return f"[{format_time(event.get('origin_server_ts'))}] {_pseudonym(event)}: {clean(content.get('body'))}"


def event_line(event: Dict[str, Any]) -> str:
    """One line for any event: a message line, ``[HH:MM] * what happened``, or the bare type."""
    if is_message(event):
        return message_line(event)
    text = describe(event) or f"{_pseudonym(event)} sent {clean(event.get('type'))}"
    return f"[{format_time(event.get('origin_server_ts'))}] * {text}"


def event_json(event: Dict[str, Any]) -> str:
    """The client event as one line of JSON (UTF-8 text, keys sorted)."""
    return json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
