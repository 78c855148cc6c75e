"""Frozen row types that the stores take and return (one per table, fields in column order).

Timestamps are milliseconds since the Unix epoch; ``pos`` is the global stream position.
The stores trust these values: validation happens before they are built (protocol/, rooms/).
"""

from __future__ import annotations

from typing import Any, Optional

import attr

__all__ = ["AccountRow", "DeviceRow", "RoomRow", "EventRow", "StateRow", "TxnRow"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AccountRow:
    """One account; ``pseudonym_key`` is the case-folded pseudonym (unique)."""

    user_id: str
    pseudonym: str
    pseudonym_key: str
    password_hash: str
    created_ts: int
    pseudonym_skeleton: Optional[str] = None
    """The look-alike form (unique; NULL for an old account whose skeleton an older one has)."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DeviceRow:
    """One signed-in device; ``token_hash`` is the hash of its access token (unique)."""

    user_id: str
    device_id: str
    name: Optional[str]
    token_hash: bytes
    created_ts: int
    last_seen_ts: Optional[int]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RoomRow:
    """One room; ``last_event_id``/``depth`` are its forward extremity."""

    room_id: str
    kind: str
    creator: str
    is_public: bool
    created_ts: int
    last_event_id: str
    depth: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class EventRow:
    """One persisted event; ``json`` is the canonical JSON of its federation form, or an
    ``UnsignedEvent`` that the writer finishes (signs) just before the insert (decision 0018)."""

    pos: int
    event_id: str
    room_id: str
    type: str
    state_key: Optional[str]
    sender: str
    origin_server_ts: int
    json: Any


@attr.s(frozen=True, slots=True, auto_attribs=True)
class StateRow:
    """One current-state entry: ``(room_id, type, state_key)`` points at an event."""

    room_id: str
    type: str
    state_key: str
    event_id: str
    pos: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TxnRow:
    """The event a client transaction ID produced (makes ``send`` idempotent)."""

    user_id: str
    txn_id: str
    event_id: str
    pos: int
