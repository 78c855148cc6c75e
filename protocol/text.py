"""Mentions and hashtags in free text (pure: no I/O, no clocks).

- A mention is ``@`` + a pseudonym (letters, digits, ``_ - .``, 3-32 characters, starting
  with a letter or digit) where the ``@`` is not preceded by a word character or ``@``
  (so ``bob@example.com`` mentions nobody; URLs are removed first). A trailing ``.`` or ``-`` (end of a
  sentence) is not part of the pseudonym. The server resolves pseudonyms case-insensitively.
- A hashtag is ``#`` + Unicode letters, digits and ``_`` with at least one letter, not
  preceded by a word character or one of ``# & / @`` (so ``C#``, ``a#b``, ``&#39;`` and
  URL fragments are not tags). URLs (``scheme://...``, ``www....``) and e-mail addresses
  are removed before scanning. Tags are case-folded (``#Sleep`` == ``#SLEEP``) and NFC
  normalised; tags longer than ``MAX_TAG_CHARS`` are ignored, not truncated.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, List

__all__ = ["MAX_TAG_CHARS", "MAX_ITEMS", "extract_mentions", "extract_hashtags", "normalise_tag"]

MAX_TAG_CHARS = 64
MAX_ITEMS = 20
"""At most this many distinct mentions (and, separately, tags) are taken from one event."""

_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*://|www\.)\S*", re.IGNORECASE)
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_.\-]{2,31})(?![\w@])")
_TAG = re.compile(r"(?<![\w#&/@])#(\w+)")


def _blank(pattern: "re.Pattern[str]", text: str) -> str:
    """Replace each match with spaces (positions are kept; nothing else matches across it)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def extract_mentions(texts: Iterable[str]) -> List[str]:
    """Distinct pseudonyms mentioned in ``texts`` (as written, first occurrence first)."""
    seen = set()
    out: List[str] = []
    for text in texts:
        for match in _MENTION.finditer(_blank(_URL, text)):
            name = match.group(1).rstrip(".-")
            key = name.casefold()
            if len(name) < 3 or key in seen:
                continue
            seen.add(key)
            out.append(name)
            if len(out) >= MAX_ITEMS:
                return out
    return out


def normalise_tag(raw: str) -> str:
    """The canonical form of a tag (without ``#``): NFC, then case-folded, then NFC again."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", raw).casefold())


def _is_tag(tag: str) -> bool:
    return 0 < len(tag) <= MAX_TAG_CHARS and any(c.isalpha() for c in tag) \
        and all(c == "_" or c.isalnum() for c in tag)


def extract_hashtags(texts: Iterable[str]) -> List[str]:
    """Distinct normalised hashtags in ``texts`` (first occurrence first)."""
    seen = set()
    out: List[str] = []
    for text in texts:
        scrubbed = _blank(_EMAIL, _blank(_URL, text))
        for match in _TAG.finditer(scrubbed):
            tag = normalise_tag(match.group(1))
            if not _is_tag(tag) or tag in seen:
                continue
            seen.add(tag)
            out.append(tag)
            if len(out) >= MAX_ITEMS:
                return out
    return out
