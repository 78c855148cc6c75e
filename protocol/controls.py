"""Member controls (#6): block, mute words, content-warning preferences, take a break (pure).

docs/protocol.md §8.7. Every control is private to the member who sets it: the blocked
member is never told, nobody else can read another member's mute words or preferences.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import attr

from protocol.errors import BadField, MissingField
from protocol.frames import RequestId, read_bool, read_int, read_user_id, register_request
from protocol.ids import UserID

__all__ = [
    "CW_CATEGORIES", "CW_CHOICES", "MAX_BLOCKS", "MAX_MUTE_WORDS", "MAX_MUTE_WORD_CHARS",
    "MAX_BREAK_MS", "normalise_word", "mute_pattern", "cw_category", "read_words", "read_cw_prefs",
    "Block", "Unblock", "Blocks", "MuteWordsSet", "MuteWords", "CwPrefsSet", "CwPrefs",
    "BreakSet", "Controls",
]

CW_CATEGORIES = ("self_harm", "suicide", "eating", "abuse", "substances", "distress", "other")
"""Content-warning categories; the same list as ``protocol.moderation.CW_CATEGORIES``."""

CW_CHOICES = ("show", "blur", "hide")
"""What a member wants done with events carrying a category: default ``show``."""

MAX_BLOCKS = 1000
MAX_MUTE_WORDS = 100
MAX_MUTE_WORD_CHARS = 50
MAX_BREAK_MS = 90 * 24 * 3600 * 1000
"""A break ends by itself at most 90 days after it starts (``until_ts``)."""

MAX_TS = 2**53 - 1


def normalise_word(word: str) -> str:
    """A mute word as matched: casefolded, inner whitespace runs made single spaces."""
    return " ".join(word.casefold().split())


def mute_pattern(words: List[str]) -> Optional["re.Pattern[str]"]:
    """One regex matching any of ``words`` as whole words, case-insensitively (None if none)."""
    if not words:
        return None
    alts = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def cw_category(event: Mapping[str, Any]) -> Optional[str]:
    """The content-warning category an event carries (``content_warning`` on the event as
    moderation decorates it in history, or in its content), given as a string or as
    ``{"category": ...}``; None if none. The server and clients read it the same way."""
    cw = event.get("content_warning")
    if cw is None:
        content = event.get("content")
        cw = content.get("content_warning") if isinstance(content, dict) else None
    if isinstance(cw, dict):
        cw = cw.get("category")
    return cw if type(cw) is str else None


def read_words(frame: Dict[str, Any], name: str = "words") -> List[str]:
    """A list of 0..MAX_MUTE_WORDS mute words of 1..MAX_MUTE_WORD_CHARS characters each."""
    if name not in frame:
        raise MissingField(f"{name} is required", name)
    value = frame[name]
    if type(value) is not list or len(value) > MAX_MUTE_WORDS:
        raise BadField(f"{name} must be a list of at most {MAX_MUTE_WORDS} words", name)
    out: List[str] = []
    for i, word in enumerate(value):
        if type(word) is not str:
            raise BadField(f"{name}[{i}] must be a string", f"{name}[{i}]")
        norm = normalise_word(word)
        if not 1 <= len(norm) <= MAX_MUTE_WORD_CHARS:
            raise BadField(f"{name}[{i}] must have 1..{MAX_MUTE_WORD_CHARS} characters", f"{name}[{i}]")
        if norm not in out:
            out.append(norm)
    return out


def read_cw_prefs(frame: Dict[str, Any], name: str = "categories") -> Dict[str, str]:
    """``{category: show|blur|hide}`` over CW_CATEGORIES (a partial update)."""
    if name not in frame:
        raise MissingField(f"{name} is required", name)
    value = frame[name]
    if type(value) is not dict:
        raise BadField(f"{name} must be an object of category: show|blur|hide", name)
    out: Dict[str, str] = {}
    for category, choice in value.items():
        field = f"{name}.{category}"
        if category not in CW_CATEGORIES:
            raise BadField(f"{field}: category must be one of: {', '.join(CW_CATEGORIES)}", field)
        if choice not in CW_CHOICES:
            raise BadField(f"{field} must be one of: {', '.join(CW_CHOICES)}", field)
        out[category] = choice
    return out


_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class Block:
    """``block``: stop seeing ``user_id`` (live, history, notifications, DMs). They are not told."""

    id: RequestId
    user_id: UserID


@_frozen
class Unblock:
    """``unblock``: undo ``block``."""

    id: RequestId
    user_id: UserID


@_frozen
class Blocks:
    """``blocks``: the members the caller blocks."""

    id: RequestId


@_frozen
class MuteWordsSet:
    """``mute_words_set``: replace the caller's mute words."""

    id: RequestId
    words: Tuple[str, ...]


@_frozen
class MuteWords:
    """``mute_words``: the caller's mute words."""

    id: RequestId


@_frozen
class CwPrefsSet:
    """``cw_prefs_set``: change some content-warning preferences (others are kept)."""

    id: RequestId
    categories: Dict[str, str]


@_frozen
class CwPrefs:
    """``cw_prefs``: the caller's content-warning preferences (every category)."""

    id: RequestId


@_frozen
class BreakSet:
    """``break_set``: take a break (``on``), optionally until ``until_ts`` (ms), or end it."""

    id: RequestId
    on: bool
    until_ts: Optional[int]


@_frozen
class Controls:
    """``controls``: every control of the caller at once."""

    id: RequestId


def _on(frame: Dict[str, Any]) -> bool:
    if "on" not in frame:
        raise MissingField("on is required", "on")
    return read_bool(frame, "on", False)


register_request("block", lambda f, rid: Block(rid, read_user_id(f)))
register_request("unblock", lambda f, rid: Unblock(rid, read_user_id(f)))
register_request("blocks", lambda f, rid: Blocks(rid))
register_request("mute_words_set", lambda f, rid: MuteWordsSet(rid, tuple(read_words(f))))
register_request("mute_words", lambda f, rid: MuteWords(rid))
register_request("cw_prefs_set", lambda f, rid: CwPrefsSet(rid, read_cw_prefs(f)))
register_request("cw_prefs", lambda f, rid: CwPrefs(rid))
register_request("break_set", lambda f, rid: BreakSet(rid, _on(f), read_int(f, "until_ts", None, 0, MAX_TS)))
register_request("controls", lambda f, rid: Controls(rid))
