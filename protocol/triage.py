"""Reports, the triage queue and the duty rota (#6): request types, settings and the PURE
ranking and countdown maths (no I/O; the server feature is ``sharon_server.features.triage``).

The queue order (``queue_key``, Hypothesis-tested in tests/test_triage.py) is a total
order over open items at one instant ``now``:

1. **effective severity**, highest first. Each category has a severity (``SEVERITY``,
   spaced by 2); an item that is past its response target (``due_ts <= now``) gets +1.
   So an overdue item outranks every item of its own category that is not yet overdue,
   but never an item of a more severe category: an overdue spam report never jumps a
   fresh risk-to-self item.
2. **risk score** (per mille, 0..1000), highest first;
3. **age**: older (smaller ``created_ts``) first;
4. **item ID**, ascending: the tie-break that makes the order total, so sorting is
   deterministic whatever order the items arrive in.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import attr

from protocol.errors import BadField, MissingField
from protocol.frames import (
    RequestId, read_bool, read_event_id, read_room_id, read_str, read_user_id, register_request,
)
from protocol.ids import EventID, RoomID, UserID
from protocol.spaces import DEFAULT_SETTINGS, register_setting

__all__ = [
    "REPORT_CATEGORIES", "CATEGORIES", "SEVERITY", "HIGH_RISK", "KINDS", "OUTCOMES", "OUTCOME_WORDS",
    "outcome_words",
    "DEFAULT_RESPONSE_TARGETS", "DEFAULT_SIGNPOSTING", "FALLBACK_ROLES", "MAX_NOTE_CHARS",
    "normalise_category", "score_milli", "due_ts", "countdown_ms", "is_overdue", "queue_key",
    "rank", "is_high_risk", "scheduled_now", "minute_of_week",
    "Report", "MyReports", "Queue", "QueueClaim", "QueueRelease", "QueueResolve", "QueueEscalate",
    "Duty", "Rota", "TriageScan",
]

REPORT_CATEGORIES = ("risk_to_self", "risk_to_others", "abuse", "identifying", "spam", "other")
"""What a member may report something as."""

CATEGORIES = REPORT_CATEGORIES + ("unanswered", "appeal")
"""Every triage category (reports', posts left unanswered, appeals against sanctions)."""

SEVERITY: Dict[str, int] = {
    "risk_to_self": 10, "risk_to_others": 10, "abuse": 8, "identifying": 8,
    "unanswered": 6, "other": 4, "appeal": 4, "spam": 2,
}
"""Clinical severity of each category; spaced by 2 so the overdue bonus (+1) stays inside
its category's band."""

HIGH_RISK = frozenset({"risk_to_self", "risk_to_others"})
"""Categories that always raise a live alert."""

KINDS = ("report", "risk", "premod", "unanswered", "appeal")
"""Where queue items come from."""

OUTCOMES = ("action_taken", "no_action", "member_supported", "referred", "duplicate", "answered")
"""How a case can close (``queue_resolve``)."""

OUTCOME_WORDS: Dict[str, str] = {
    "action_taken": "Thank you for your report. Our moderators looked at it and took action.",
    "no_action": ("Thank you for your report. Our moderators looked at it carefully and decided "
                  "it did not break the community guidelines this time."),
    "member_supported": ("Thank you for your report. Our team has reached out to offer support. "
                         "Looking out for each other matters."),
    "referred": ("Thank you for your report. It has been passed to the clinical team, who will "
                 "follow it up."),
    "duplicate": ("Thank you for your report. Someone had already raised this, and our moderators "
                  "have dealt with it."),
    "answered": "Thank you for your report. It has been dealt with.",
}
"""What the reporter is told when the case closes: kind, plain words, nothing about who."""


def outcome_words(outcome: str) -> str:
    """The reporter's message for ``outcome`` (other features may close items with their own
    outcome names, e.g. an appeal's: those get the general words)."""
    return OUTCOME_WORDS.get(outcome, OUTCOME_WORDS["answered"])

DEFAULT_RESPONSE_TARGETS: Dict[str, int] = {
    "risk_to_self": 15 * 60_000, "risk_to_others": 15 * 60_000, "abuse": 3_600_000,
    "identifying": 3_600_000, "spam": 86_400_000, "other": 86_400_000, "unanswered": 86_400_000,
    "appeal": 3 * 86_400_000,
}
"""Response-time target per category, in ms (setting ``response_targets``)."""

DEFAULT_SIGNPOSTING: List[Dict[str, str]] = [
    {"name": "Emergency services", "phone": "999",
     "hours": "24/7 - if you are in immediate danger or have seriously hurt yourself"},
    {"name": "Samaritans", "phone": "116 123", "url": "https://www.samaritans.org", "hours": "24/7, free"},
    {"name": "SHOUT", "text": "Text SHOUT to 85258", "url": "https://giveusashout.org", "hours": "24/7, free"},
    {"name": "NHS 111 (mental health option)", "phone": "111, then option 2", "hours": "24/7"},
]
"""The UK default for ``crisis_signposting``; every service should review and localise it
(add the local crisis team)."""

FALLBACK_ROLES = ("moderator", "clinician", "admin")
"""Roles ``rota_fallback`` may name instead of user IDs."""

MAX_NOTE_CHARS = 1000
MAX_SUMMARY_CHARS = 280
MAX_SLOTS = 100
MAX_SLOT_USERS = 20
MAX_FALLBACK = 20
MAX_SIGNPOSTS = 20
MINUTES_PER_WEEK = 7 * 24 * 60
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# -- ranking and countdowns (pure) ----------------------------------------------------------

def normalise_category(kind: str, category: Optional[str]) -> str:
    """The triage category for an item of ``kind`` whose source called it ``category``.

    Report categories pass through; a risk hit's own category (e.g. ``suicide``,
    ``violence``; also on a held post) maps to risk_to_self or risk_to_others; anything
    else is ``other``.
    """
    if category in CATEGORIES:
        return category  # type: ignore[return-value]
    if kind in ("unanswered", "appeal"):
        return kind
    if kind in ("risk", "premod") and category:
        text = (category or "").lower()
        if any(word in text for word in ("other", "violen", "threat", "harm_to", "homicid", "safeguard")):
            return "risk_to_others"
        return "risk_to_self"
    return "other"


def score_milli(score: Any) -> int:
    """A risk score (0..1 float, or 0..100 / 0..1000 integers) as per mille, clamped."""
    if type(score) is bool or not isinstance(score, (int, float)):
        return 0
    if isinstance(score, float) and score <= 1.0:
        value = score * 1000
    elif score <= 1:
        value = score * 1000
    elif score <= 100:
        value = score * 10
    else:
        value = score
    return max(0, min(1000, int(round(value))))


def due_ts(created_ts: int, category: str, targets: Mapping[str, int]) -> int:
    """When an item of ``category`` created at ``created_ts`` is due."""
    return created_ts + int(targets.get(category, DEFAULT_RESPONSE_TARGETS.get(category, 86_400_000)))


def countdown_ms(due: int, now: int) -> int:
    """Time left until ``due`` (negative once overdue)."""
    return due - now


def is_overdue(due: int, now: int) -> bool:
    """True once the response target has passed."""
    return due <= now


def queue_key(item: Mapping[str, Any], now: int) -> Tuple[int, int, int, str]:
    """The sort key of one item (see the module docstring); smaller sorts first.

    ``item`` needs ``category``, ``risk_score`` (per mille), ``created_ts``, ``due_ts``
    and ``item_id``.
    """
    severity = SEVERITY.get(item["category"], SEVERITY["other"])
    if is_overdue(item["due_ts"], now):
        severity += 1
    return (-severity, -int(item["risk_score"]), int(item["created_ts"]), str(item["item_id"]))


def rank(items: Iterable[Mapping[str, Any]], now: int) -> List[Mapping[str, Any]]:
    """Open items in queue order at ``now``."""
    return sorted(items, key=lambda item: queue_key(item, now))


def is_high_risk(category: str, score: int, threshold: int) -> bool:
    """True when an item must raise a live alert: a risk category, or a score at or above
    the service's alert threshold (both per mille)."""
    return category in HIGH_RISK or score >= threshold


# -- the rota (pure) ------------------------------------------------------------------------

def minute_of_week(now_ms: int) -> int:
    """Minutes since Monday 00:00 UTC for a time in ms since the epoch (1970-01-01 was a Thursday)."""
    minutes = now_ms // 60_000
    return (minutes + 3 * 24 * 60) % MINUTES_PER_WEEK


def _hhmm(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def scheduled_now(schedule: Sequence[Mapping[str, Any]], now_ms: int) -> Set[str]:
    """The staff scheduled on duty at ``now_ms`` by weekly UTC slots.

    A slot ``{"day": "mon", "start": "22:00", "end": "08:00", "user_ids": [...]}`` whose end
    is not after its start runs past midnight into the next day.
    """
    now = minute_of_week(now_ms)
    out: Set[str] = set()
    for slot in schedule:
        start = _DAYS.index(slot["day"]) * 1440 + _hhmm(slot["start"])
        length = (_hhmm(slot["end"]) - _hhmm(slot["start"])) % 1440 or 1440
        if (now - start) % MINUTES_PER_WEEK < length:
            out.update(slot["user_ids"])
    return out


# -- settings ---------------------------------------------------------------------------------

def _per_mille(value: Any, field: str) -> int:
    if type(value) is not int or not 0 <= value <= 1000:
        raise BadField(f"{field} must be an integer 0..1000 (per mille of the risk score)", field)
    return value


def _count(value: Any, field: str) -> int:
    if type(value) is not int or not 1 <= value <= 100:
        raise BadField(f"{field} must be an integer 1..100", field)
    return value


def _ms(low: int, high: int):
    def check(value: Any, field: str) -> int:
        if type(value) is not int or not low <= value <= high:
            raise BadField(f"{field} must be an integer {low}..{high} (milliseconds)", field)
        return value
    return check


def _targets(value: Any, field: str) -> Dict[str, int]:
    if type(value) is not dict:
        raise BadField(f"{field} must be an object of category: milliseconds", field)
    out = dict(DEFAULT_RESPONSE_TARGETS)
    for category, ms in value.items():
        if category not in CATEGORIES:
            raise BadField(f"{field}.{category} is not a triage category", f"{field}.{category}")
        if type(ms) is not int or not 1000 <= ms <= 30 * 86_400_000:
            raise BadField(f"{field}.{category} must be 1000..2592000000 ms", f"{field}.{category}")
        out[category] = ms
    return out


_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")


def _schedule(value: Any, field: str) -> List[Dict[str, Any]]:
    if type(value) is not list or len(value) > MAX_SLOTS:
        raise BadField(f"{field} must be a list of at most {MAX_SLOTS} slots", field)
    out = []
    for i, slot in enumerate(value):
        where = f"{field}[{i}]"
        if type(slot) is not dict or set(slot) - {"day", "start", "end", "user_ids"}:
            raise BadField(f"{where} must be an object with day, start, end and user_ids", where)
        if slot.get("day") not in _DAYS:
            raise BadField(f"{where}.day must be one of: {', '.join(_DAYS)}", f"{where}.day")
        for key in ("start", "end"):
            if type(slot.get(key)) is not str or not _TIME.match(slot[key]):
                raise BadField(f"{where}.{key} must be a UTC time HH:MM", f"{where}.{key}")
        users = slot.get("user_ids")
        if type(users) is not list or not 1 <= len(users) <= MAX_SLOT_USERS:
            raise BadField(f"{where}.user_ids must list 1..{MAX_SLOT_USERS} user IDs", f"{where}.user_ids")
        ids = sorted({str(UserID.parse(u, field=f"{where}.user_ids")) for u in users})
        out.append({"day": slot["day"], "start": slot["start"], "end": slot["end"], "user_ids": ids})
    return out


def _fallback(value: Any, field: str) -> List[str]:
    if type(value) is not list or not 1 <= len(value) <= MAX_FALLBACK:
        raise BadField(f"{field} must list 1..{MAX_FALLBACK} user IDs or roles "
                       f"({', '.join(FALLBACK_ROLES)})", field)
    out: List[str] = []
    for entry in value:
        item = entry if entry in FALLBACK_ROLES else str(UserID.parse(entry, field=field))
        if item not in out:
            out.append(item)
    return out


def _signposting(value: Any, field: str) -> List[Dict[str, str]]:
    if type(value) is not list or len(value) > MAX_SIGNPOSTS:
        raise BadField(f"{field} must be a list of at most {MAX_SIGNPOSTS} entries", field)
    out = []
    for i, entry in enumerate(value):
        where = f"{field}[{i}]"
        if type(entry) is not dict or set(entry) - {"name", "phone", "text", "url", "hours"}:
            raise BadField(f"{where} must be an object with name and any of phone, text, url, hours", where)
        for key, item in entry.items():
            if type(item) is not str or not item.strip() or len(item) > 200:
                raise BadField(f"{where}.{key} must be a non-empty string of at most 200 characters",
                               f"{where}.{key}")
        if "name" not in entry or not {"phone", "text", "url"} & set(entry):
            raise BadField(f"{where} needs a name and a phone, text or url", where)
        out.append(dict(entry))
    return out


def _bool(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise BadField(f"{field} must be true or false", field)
    return value


register_setting("response_targets", dict(DEFAULT_RESPONSE_TARGETS), _targets)
register_setting("report_hide_count", 3, _count)
register_setting("risk_hold_threshold", 800, _per_mille)
if "risk_alert_threshold" not in DEFAULT_SETTINGS:  # the risk feature may own it
    register_setting("risk_alert_threshold", 500, _per_mille)
register_setting("rota_schedule", [], _schedule)
register_setting("rota_fallback", ["moderator", "admin"], _fallback)
register_setting("crisis_signposting", [dict(e) for e in DEFAULT_SIGNPOSTING], _signposting)
register_setting("signpost_when_on_duty", True, _bool)
register_setting("unanswered_after_ms", 6 * 3_600_000, _ms(0, 30 * 86_400_000))
register_setting("unanswered_escalate_after_ms", 12 * 3_600_000, _ms(0, 30 * 86_400_000))


# -- requests -----------------------------------------------------------------------------------

_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class Report:
    """``report``: any member reports a message, post, comment, DM or member."""

    id: RequestId
    room_id: RoomID
    event_id: Optional[EventID]
    user_id: Optional[UserID]
    category: str
    note: Optional[str]


@_frozen
class MyReports:
    """``my_reports``: the caller's own reports and their outcomes."""

    id: RequestId


@_frozen
class Queue:
    """``queue``: the open items of one service (or every service the caller staffs)."""

    id: RequestId
    service_id: Optional[RoomID]


@_frozen
class QueueClaim:
    """``queue_claim``: take an item so nobody else works it."""

    id: RequestId
    item_id: str


@_frozen
class QueueRelease:
    """``queue_release``: give a claimed item back to the queue."""

    id: RequestId
    item_id: str


@_frozen
class QueueResolve:
    """``queue_resolve``: close an item with an outcome (reporters are told)."""

    id: RequestId
    item_id: str
    outcome: str
    note: Optional[str]


@_frozen
class QueueEscalate:
    """``queue_escalate``: pass an item to the service's clinicians."""

    id: RequestId
    item_id: str
    note: Optional[str]


@_frozen
class Duty:
    """``duty``: a staff member goes on or off duty for a service."""

    id: RequestId
    service_id: RoomID
    on: bool


@_frozen
class Rota:
    """``rota``: who is on duty now, the schedule and the fallback."""

    id: RequestId
    service_id: RoomID


@_frozen
class TriageScan:
    """``triage_scan``: run the unanswered-posts scan for a service now."""

    id: RequestId
    service_id: RoomID


def _optional(frame: Dict[str, Any], name: str, reader: Any) -> Any:
    return None if frame.get(name) is None else reader(frame, name)


def _choice(frame: Dict[str, Any], name: str, choices: Sequence[str]) -> str:
    value = read_str(frame, name, max_len=64)
    if value not in choices:
        raise BadField(f"{name} must be one of: {', '.join(choices)}", name)
    return value


def _item_id(frame: Dict[str, Any]) -> str:
    return read_str(frame, "item_id", min_len=1, max_len=64)


def _note(frame: Dict[str, Any]) -> Optional[str]:
    note = read_str(frame, "note", max_len=MAX_NOTE_CHARS, optional=True)
    return note if note else None


def _report(frame: Dict[str, Any], rid: RequestId) -> Report:
    event_id = _optional(frame, "event_id", read_event_id)
    user_id = _optional(frame, "user_id", read_user_id)
    if event_id is None and user_id is None:
        raise MissingField("name what you report: event_id, user_id or both", "event_id")
    return Report(rid, read_room_id(frame), event_id, user_id,
                  _choice(frame, "category", REPORT_CATEGORIES), _note(frame))


def _duty(frame: Dict[str, Any], rid: RequestId) -> Duty:
    if frame.get("on") is None:
        raise MissingField("on is required (true or false)", "on")
    return Duty(rid, read_room_id(frame, "service_id"), read_bool(frame, "on", False))


register_request("report", _report)
register_request("my_reports", lambda f, rid: MyReports(rid))
register_request("queue", lambda f, rid: Queue(rid, _optional(f, "service_id", read_room_id)))
register_request("queue_claim", lambda f, rid: QueueClaim(rid, _item_id(f)))
register_request("queue_release", lambda f, rid: QueueRelease(rid, _item_id(f)))
register_request("queue_resolve", lambda f, rid: QueueResolve(
    rid, _item_id(f), _choice(f, "outcome", OUTCOMES), _note(f)))
register_request("queue_escalate", lambda f, rid: QueueEscalate(rid, _item_id(f), _note(f)))
register_request("duty", _duty)
register_request("rota", lambda f, rid: Rota(rid, read_room_id(f, "service_id")))
register_request("triage_scan", lambda f, rid: TriageScan(rid, read_room_id(f, "service_id")))
