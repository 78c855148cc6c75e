"""A member's own controls on this client (#6): one helper for ``sharon tail``, ``history``
and ``chat``.

The server applies member controls per viewer in history and resume replay: it leaves out
events whose content-warning category the member hides, and marks the ones they blur
(``"blurred": true``) or that contain one of their mute words (``"muted": true``). Live
frames are encoded once for every receiver, so they carry no such marks: the client
applies the member's mute words and content-warning preferences to them itself, with the
same rules (``MemberView.verdict``). A content warning only ever reaches an event through a
moderator (``ps.mod.cw``), after it was sent; clients re-read history when one arrives.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional

from protocol.controls import cw_category, mute_pattern
from protocol.errors import SharonError

__all__ = ["MemberView", "SHOW", "BLUR", "HIDE", "cw_category", "blurred_copy"]

SHOW, BLUR, HIDE = "show", "blur", "hide"


class MemberView:
    """What this member's controls do to one event: show it, blur it or hide it."""

    def __init__(self, mute_words: Iterable[str] = (), cw_prefs: Optional[Mapping[str, str]] = None) -> None:
        self.mute_words = [w for w in mute_words if type(w) is str]
        self.cw_prefs = {k: v for k, v in (cw_prefs or {}).items() if v in (BLUR, HIDE)}
        self._pattern = mute_pattern([w for w in self.mute_words if w.strip()])  # the server's rule

    @classmethod
    async def fetch(cls, client: Any) -> "MemberView":
        """The member's mute words and content-warning preferences (the ``controls`` op); an
        empty view from a server without member controls."""
        try:
            got = await client.request("controls")
        except SharonError:
            return cls()
        prefs = got.get("cw_prefs") if isinstance(got.get("cw_prefs"), dict) else {}
        words = got.get("mute_words") if isinstance(got.get("mute_words"), list) else []
        return cls(words, prefs)

    def muted(self, event: Mapping[str, Any]) -> bool:
        """True if the server marked the event muted or its title or body has a mute word."""
        if event.get("muted"):
            return True
        content = event.get("content")
        if self._pattern is None or not isinstance(content, dict):
            return False
        return any(type(t) is str and self._pattern.search(t) for t in (content.get("title"), content.get("body")))

    def verdict(self, event: Mapping[str, Any]) -> str:
        """``show``, ``blur`` or ``hide`` (state events are always shown)."""
        if "state_key" in event:
            return SHOW
        if self.muted(event):
            return HIDE
        choice = self.cw_prefs.get(cw_category(event) or "")
        if choice == HIDE:
            return HIDE
        if choice == BLUR or event.get("blurred"):
            return BLUR
        return SHOW


def blurred_copy(event: Dict[str, Any], hint: str) -> Dict[str, Any]:
    """``event`` with its body replaced by ``content warning: CATEGORY — HINT`` (and the
    title dropped): what a blurred event shows until the member asks to see it."""
    category = cw_category(event) or "sensitive content"
    content = event.get("content") if isinstance(event.get("content"), dict) else {}
    kept = {k: v for k, v in content.items() if k not in ("body", "title", "formatted_body")}
    kept["body"] = f"content warning: {category} \u2014 {hint}"
    return dict(event, content=kept, blurred=True)
