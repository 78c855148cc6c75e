"""Moderation (#6): pre-moderation, actions on events, sanctions and appeals (pure).

docs/protocol.md §8.9 and docs/safety.md describe the model. This module holds what both
the server and clients need: the post-like event types pre-moderation applies to, the
``ps.mod.*`` event types the server sends into rooms when a moderator acts, the default
house rules, the per-service settings (``premoderation``, ``premod_first_posts``,
``rules``), the plain-words notices members get, and one request class per operation.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, List, Optional, Tuple

from protocol.errors import BadField, MissingField
from protocol.fields import Reader, event, make_request, room, text, user
from protocol.frames import read_bool, read_int, read_str
from protocol.spaces import register_setting

__all__ = [
    "POST_TYPES", "MOD_HIDE", "MOD_UNHIDE", "MOD_REDACT", "MOD_CW", "MOD_TYPES",
    "PREMOD_MODES", "DEFAULT_RULES", "SANCTION_KINDS", "OUTCOMES", "CW_CATEGORIES",
    "HIDDEN_TEXT", "REDACTED_TEXT", "HOLD_NOTICES", "validate_rules", "sanction_notice",
    "appeal_notice", "format_when", "REQUESTS", "MAX_PAGE",
]

POST_TYPES = frozenset({
    "m.room.message", "ps.thread", "ps.reply", "ps.post", "ps.comment", "ps.blog.post", "ps.edit",
})
"""Event types that carry what a member writes: pre-moderation and hold rules apply to them
(an edit too: otherwise a held member could post something harmless and edit it)."""

MOD_HIDE = "ps.mod.hide"
MOD_UNHIDE = "ps.mod.unhide"
MOD_REDACT = "ps.mod.redact"
MOD_CW = "ps.mod.cw"
MOD_TYPES = (MOD_HIDE, MOD_UNHIDE, MOD_REDACT, MOD_CW)
"""Room events telling clients a moderator acted on ``content.target`` (no reason, no rule:
those go to the author and staff only)."""

PREMOD_MODES = ("off", "all", "new_members")
SANCTION_KINDS = ("warn", "mute", "suspend", "ban")
OUTCOMES = ("upheld", "overturned")
CW_CATEGORIES = ("self_harm", "suicide", "eating", "abuse", "substances", "distress", "other")
"""Content-warning categories (members' CW preferences name the same ones)."""

MAX_PAGE = 100
MAX_RULES = 50
MAX_REASON_CHARS = 1000
MAX_APPEAL_CHARS = 4000

HIDDEN_TEXT = "hidden by a moderator while it is reviewed"
REDACTED_TEXT = "removed by a moderator"

HOLD_NOTICES = {
    "premoderation": "This service checks posts before others see them. A moderator will look at yours soon.",
    "premod_member": "For now a moderator checks your posts before others see them. This one will be looked at soon.",
}
"""Plain words for the built-in hold reasons (hold rules may add their own reason codes)."""

DEFAULT_RULES: List[Dict[str, str]] = [
    {"id": "be-kind", "title": "Be kind",
     "plain_words": "Be kind and respectful. No insults, pile-ons or put-downs."},
    {"id": "no-identifying-details", "title": "No identifying details",
     "plain_words": "Do not share anything that could identify you or anyone else: names, addresses, "
                    "phone numbers, workplaces or photos of faces."},
    {"id": "no-graphic-self-harm", "title": "No graphic self-harm",
     "plain_words": "Talk about how you feel, but do not describe methods, wounds or numbers "
                    "(weights, doses, calories)."},
    {"id": "no-advertising", "title": "No advertising",
     "plain_words": "Do not advertise or sell anything, or ask people to go elsewhere."},
    {"id": "stay-safe", "title": "Keep each other safe",
     "plain_words": "If you or someone else is in danger, tell a moderator or call emergency services. "
                    "Do not arrange to meet."},
]
"""House rules of a service without its own ``rules`` setting."""


def validate_rules(value: Any, field: str) -> List[Dict[str, str]]:
    """A list of ``{id, title, plain_words}`` with unique IDs (BadField names the bad item)."""
    if type(value) is not list or not value or len(value) > MAX_RULES:
        raise BadField(f"{field} must be a list of 1..{MAX_RULES} rules", field)
    out, seen = [], set()
    for i, rule in enumerate(value):
        where = f"{field}[{i}]"
        if type(rule) is not dict:
            raise BadField(f"{where} must be an object {{id, title, plain_words}}", where)
        item = {}
        for key, hi in (("id", 64), ("title", 200), ("plain_words", 1000)):
            text = rule.get(key)
            if type(text) is not str or not text.strip() or len(text) > hi:
                raise BadField(f"{where}.{key} must be a non-empty string of at most {hi} characters",
                               f"{where}.{key}")
            item[key] = text.strip()
        if item["id"] in seen:
            raise BadField(f"{where}.id {item['id']!r} is used twice", f"{where}.id")
        seen.add(item["id"])
        out.append(item)
    return out


def _premod_mode(value: Any, field: str) -> str:
    if value not in PREMOD_MODES:
        raise BadField(f"{field} must be one of: {', '.join(PREMOD_MODES)}", field)
    return value


def _first_posts(value: Any, field: str) -> int:
    if type(value) is not int or not 1 <= value <= 1000:
        raise BadField(f"{field} must be an integer 1..1000", field)
    return value


register_setting("premoderation", "off", _premod_mode)
register_setting("premod_first_posts", 3, _first_posts)
register_setting("rules", [dict(r) for r in DEFAULT_RULES], validate_rules)


def format_when(ts: Optional[int]) -> str:
    """A stream timestamp (ms) as "21 Nov 2026 21:00 UTC" for notices ("" for None)."""
    if ts is None:
        return ""
    moment = datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc)
    return moment.strftime("%d %b %Y %H:%M UTC")


def sanction_notice(kind: str, where: str, rule: Dict[str, str], reason: str,
                    until_ts: Optional[int]) -> str:
    """What the member reads about a sanction, in kind, plain words."""
    place = f" in {where}" if where else ""
    until = f" until {format_when(until_ts)}" if until_ts else ""
    head = {
        "warn": f"A moderator has sent you a reminder about the rules{place}.",
        "mute": f"A moderator has paused your posting{place}{until}. You can still read and message staff.",
        "suspend": f"A moderator has paused your account{until}.",
        "ban": f"A moderator has removed you from {where or 'this server'}.",
    }[kind]
    return (f"{head} The reason: {reason} (rule: {rule['title']} - {rule['plain_words']}) "
            "If you think this is wrong, you can appeal once, and a different moderator will decide.")


def appeal_notice(outcome: str, reason: str) -> str:
    """What the member reads when their appeal is decided."""
    if outcome == "overturned":
        return f"Your appeal was accepted and the decision has been reversed. {reason}"
    return f"A different moderator looked at your appeal and kept the decision. {reason}"


# -- requests ---------------------------------------------------------------------------------
REQUESTS: Dict[str, type] = {}


def _s(name: str, lo: int = 1, hi: Optional[int] = None, optional: bool = False) -> Reader:
    return text(name, lo, hi, optional)


_room = room
_user = user
_event = event


def _choice(name: str, choices: Tuple[str, ...], optional: bool = False) -> Reader:
    def read(f: Dict[str, Any]) -> Optional[str]:
        value = read_str(f, name, min_len=1, max_len=64, optional=optional)
        if value is not None and value not in choices:
            raise BadField(f"{name} must be one of: {', '.join(choices)}", name)
        return value
    return read


def _id(name: str) -> Reader:
    return _s(name, 1, 64)


_RULE = _s("rule", 1, 64)
_REASON = _s("reason", 1, MAX_REASON_CHARS)
_LIMIT = lambda f: read_int(f, "limit", 50, 1, MAX_PAGE)  # noqa: E731
_UNTIL = lambda f: read_int(f, "until_ts", None, 0, 2**53 - 1)  # noqa: E731


def _request(op: str, doc: str, **fields: Reader) -> type:
    """Define and register the request class for ``op`` with ``fields`` read in order."""
    return make_request(REQUESTS, op, doc, **fields)


# pre-moderation
HeldMine = _request("held_mine", "``held_mine``: the caller's own held and rejected posts.", limit=_LIMIT)
HeldList = _request("held_list", "``held_list``: staff list a service's posts waiting for review.",
                    service_id=_room("service_id"), limit=_LIMIT)
HeldApprove = _request("held_approve", "``held_approve``: staff publish a held post as its author's.",
                       held_id=_id("held_id"))
HeldReject = _request("held_reject", "``held_reject``: staff return a held post to its author with a reason.",
                      held_id=_id("held_id"), reason=_REASON, rule=_s("rule", 1, 64, optional=True))
PremodMember = _request("premod_member", "``premod_member``: staff hold a member's next N posts (0: stop).",
                        service_id=_room("service_id"), user_id=_user(),
                        posts=lambda f: read_int(f, "posts", None, 0, 1000) if f.get("posts") is not None
                        else _missing("posts"))
# actions on events
ModHide = _request("mod_hide", "``mod_hide``: hide an event from peers while it is reviewed.",
                   event_id=_event(), rule=_RULE, reason=_REASON)
ModUnhide = _request("mod_unhide", "``mod_unhide``: show a hidden event again.",
                     event_id=_event(), reason=_REASON)
ModRedact = _request("mod_redact", "``mod_redact``: remove an event's content for everyone but staff, for good.",
                     event_id=_event(), rule=_RULE, reason=_REASON)
ModContentWarning = _request("mod_content_warning", "``mod_content_warning``: put a content warning on an event.",
                             event_id=_event(), category=_choice("category", CW_CATEGORIES),
                             rule=_s("rule", 1, 64, optional=True), reason=_s("reason", 1, MAX_REASON_CHARS, True))
ModLock = _request("mod_lock", "``mod_lock``: lock (or unlock) a forum thread, citing a rule.",
                   room_id=_room("room_id"), thread_id=_event("thread_id"), rule=_RULE, reason=_REASON,
                   locked=lambda f: read_bool(f, "locked", True))
ModRules = _request("mod_rules", "``mod_rules``: a service's house rules (any member).",
                    service_id=_room("service_id"))
# sanctions
Sanction = _request("sanction", "``sanction``: warn, mute, suspend or ban a member, citing a rule.",
                    user_id=_user(), kind=_choice("kind", SANCTION_KINDS), rule=_RULE, reason=_REASON,
                    service_id=_room("service_id", optional=True), until_ts=_UNTIL)
Sanctions = _request("sanctions", "``sanctions``: staff list sanctions of a service and/or a member.",
                     service_id=_room("service_id", optional=True), user_id=_user(optional=True),
                     active=lambda f: read_bool(f, "active", False), limit=_LIMIT)
MySanctions = _request("my_sanctions", "``my_sanctions``: the caller's own sanctions with their notices.",
                       limit=_LIMIT)
SanctionLift = _request("sanction_lift", "``sanction_lift``: staff end a sanction early.",
                        sanction_id=_id("sanction_id"), reason=_REASON)
# appeals
Appeal = _request("appeal", "``appeal``: the sanctioned member appeals, once per sanction.",
                  sanction_id=_id("sanction_id"), text=_s("text", 1, MAX_APPEAL_CHARS))
AppealSignedOut = _request(
    "appeal_signed_out", "``appeal_signed_out``: a member who cannot sign in (suspended, banned from the "
    "server) appeals with their pseudonym and password instead of a session.",
    pseudonym=_s("pseudonym", 1, 64), password=_s("password", 1, 1024), sanction_id=_id("sanction_id"),
    text=_s("text", 1, MAX_APPEAL_CHARS))
Appeals = _request("appeals", "``appeals``: staff list appeals (open ones unless ``all``).",
                   service_id=_room("service_id", optional=True), all=lambda f: read_bool(f, "all", False),
                   limit=_LIMIT)
AppealDecide = _request("appeal_decide", "``appeal_decide``: a moderator other than the issuer decides an appeal.",
                        appeal_id=_id("appeal_id"), outcome=_choice("outcome", OUTCOMES), reason=_REASON)


def _missing(name: str) -> Any:
    raise MissingField(f"{name} is required", name)
