"""Room version ``ps1`` events: pruning, hashes, event IDs, signing, format checks, client form.

Events are plain JSON dicts exactly as received (federation.md §1.1: unknown top-level keys
are covered by the content hash, so we never round-trip them through a model).  Functions
here never mutate their argument; they return new dicts that may share unchanged sub-values.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any, Dict, Mapping, Tuple

from protocol.b64 import decode_b64, encode_b64, encode_b64url
from protocol.canonical_json import (
    MAX_SAFE_INT, check_json_value, encode_around, encode_canonical, encode_checked, encode_value,
)
from protocol.errors import BadEvent, BadField, TooLarge
from protocol.ids import MAX_ID_BYTES, EventID, RoomID, UserID
from protocol.signing import SigningKey, VerifyKey, sign_json, verify_json

__all__ = [
    "ROOM_VERSION",
    "ROOM_KINDS",
    "SPACE_KIND",
    "CLIENT_ROOM_KINDS",
    "MAX_PDU_BYTES",
    "MAX_PREV_EVENTS",
    "MAX_AUTH_EVENTS",
    "CREATE",
    "prune_event",
    "compute_content_hash",
    "add_hashes",
    "check_content_hash",
    "reference_hash",
    "compute_event_id",
    "room_id_for_create",
    "sign_event",
    "build_signed_event",
    "build_unsigned_event",
    "UnsignedEvent",
    "verify_event_signature",
    "validate_event_format",
    "to_client_event",
]

ROOM_VERSION = "ps1"
"""The one room version this server implements."""

ROOM_KINDS = ("chat", "dm", "forum", "wall", "blog", "space")
"""Room kinds a ``m.room.create`` event may declare in ``content.kind``.

``space`` is a service (a clinical service or cohort): its members are the service's
members and its rooms point at it from their create event's ``service`` key.
"""

SPACE_KIND = "space"
"""The kind of a service's own room."""

CLIENT_ROOM_KINDS = ("chat", "dm", "forum", "wall", "blog")
"""Kinds a member may create with ``create_room`` (services are created by admins)."""

MAX_PDU_BYTES = 65536
"""Largest event, as canonical JSON bytes, including signatures and ``unsigned``."""

MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10
CREATE = "m.room.create"

_KEEP_TOP = frozenset(
    (
        "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
        "signatures", "depth", "prev_events", "auth_events", "origin_server_ts",
    )
)  # fmt: skip
_KEEP_CONTENT: Dict[str, frozenset] = {
    "m.room.member": frozenset(("membership",)),
    "m.room.join_rules": frozenset(("join_rule", "allow")),
    "m.room.power_levels": frozenset(
        ("ban", "events", "events_default", "invite", "kick", "redact", "state_default", "users", "users_default")
    ),
    "m.room.history_visibility": frozenset(("history_visibility",)),
    "m.room.redaction": frozenset(("redacts",)),
}
_NOT_IN_CONTENT_HASH = ("unsigned", "signatures", "hashes")


def prune_event(event: Mapping[str, Any]) -> Dict[str, Any]:
    """The R11-pruned copy of ``event`` (federation.md §1.2): auth-relevant keys only.

    ``m.room.create`` keeps its whole content (so ``kind`` and ``room_version`` survive);
    ``content`` is always present in the result.
    """
    pruned = {k: v for k, v in event.items() if k in _KEEP_TOP}
    etype = event.get("type")
    content = event.get("content")
    if type(content) is not dict:
        pruned["content"] = {}
    elif etype == CREATE:
        pruned["content"] = dict(content)
    else:
        keep = _KEEP_CONTENT.get(etype) if type(etype) is str else None
        pruned["content"] = {k: v for k, v in content.items() if k in keep} if keep else {}
    return pruned


def compute_content_hash(event: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical event without ``unsigned``, ``signatures`` and ``hashes``."""
    body = {k: v for k, v in event.items() if k not in _NOT_IN_CONTENT_HASH}
    return hashlib.sha256(encode_canonical(body)).digest()


def add_hashes(event: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of ``event`` with ``hashes.sha256`` set to its content hash."""
    out = dict(event)
    old = event.get("hashes")
    hashes = dict(old) if type(old) is dict else {}
    hashes["sha256"] = encode_b64(compute_content_hash(event))
    out["hashes"] = hashes
    return out


def check_content_hash(event: Mapping[str, Any]) -> bool:
    """True if ``hashes.sha256`` matches the content hash; False if missing or garbled."""
    hashes = event.get("hashes")
    claimed = hashes.get("sha256") if type(hashes) is dict else None
    if type(claimed) is not str:
        return False
    try:
        raw = decode_b64(claimed, "hashes.sha256")
    except BadField:
        return False
    return hmac.compare_digest(raw, compute_content_hash(event))


def reference_hash(event: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical pruned event without ``signatures`` and ``unsigned``."""
    pruned = prune_event(event)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)
    return hashlib.sha256(encode_canonical(pruned)).digest()


def compute_event_id(event: Mapping[str, Any]) -> EventID:
    """``$`` + URL-safe unpadded base64 of the reference hash; never taken from the wire."""
    return EventID("$" + encode_b64url(reference_hash(event)))


def room_id_for_create(create_event: Mapping[str, Any]) -> RoomID:
    """The room ID a create event defines: ``!`` + its event ID body (R12)."""
    return compute_event_id(create_event).to_room_id()


def sign_event(event: Mapping[str, Any], server_name: str, key: SigningKey) -> Dict[str, Any]:
    """A NEW dict: ``event`` with its content hash and ``server_name``'s signature added.

    The signature covers the pruned event (federation.md §1.4); existing signatures stay.
    """
    hashed = add_hashes(event)
    signed_pruned = sign_json(prune_event(hashed), str(server_name), key)
    hashed["signatures"] = signed_pruned["signatures"]
    return hashed


class UnsignedEvent:
    """An event hashed and with its ID, whose signature is made later, maybe on another thread.

    The event ID is the hash of the pruned event WITHOUT signatures, which is also the
    message signed, so everything but the signature is known at build time. ``finish``
    signs and assembles the canonical JSON of the signed event around the signature: pure
    (the message, the two halves and the key are immutable), so the server runs it on its
    SQLite writer thread, beside the reactor, just before the event is written (decision
    0018). ``size`` is the length of the finished bytes, known before signing.
    """

    __slots__ = ("message", "head", "tail", "server_name", "key", "size", "_raw", "signature")

    def __init__(self, message: bytes, head: bytes, tail: bytes, server_name: str, key: SigningKey) -> None:
        self.message = message
        self.head = head
        self.tail = tail
        self.server_name = server_name
        self.key = key
        self.size = len(head) + _signatures_size(server_name, key.key_id) + len(tail)
        self._raw: bytes = b""
        self.signature = ""
        """The unpadded base64 signature, once ``finish`` has run."""

    def finish(self) -> bytes:
        """The canonical JSON of the signed event (signed once; later calls return it)."""
        if not self._raw:
            sig = encode_b64(self.key.sign(self.message))
            self._raw = self.head + _signatures_text(self.server_name, self.key, sig).encode("utf-8") + self.tail
            self.signature = sig
        return self._raw


_SIG_PLACEHOLDER = "A" * 86  # an Ed25519 signature is 64 bytes: 86 unpadded base64 characters


def _signatures_text(server_name: str, key: SigningKey, sig: str) -> str:
    return encode_value({server_name: {key.key_id: sig}})


@functools.lru_cache(maxsize=64)
def _signatures_size(server_name: str, key_id: str) -> int:
    """UTF-8 length of the ``signatures`` member's value: fixed per server and key, so it is
    encoded once, not for every event built."""
    return len(encode_value({server_name: {key_id: _SIG_PLACEHOLDER}}).encode("utf-8"))


def _fresh(event: Any) -> bool:
    """True for an event dict the one-pass builders take: no ``hashes``, ``signatures`` or
    ``unsigned`` yet, and a dict ``content``."""
    return type(event) is dict and "hashes" not in event and "signatures" not in event \
        and "unsigned" not in event and type(event.get("content")) is dict


def build_unsigned_event(
    event: Mapping[str, Any], server_name: str, key: SigningKey
) -> Tuple[Dict[str, Any], str, UnsignedEvent]:
    """``(the event with its hashes, its event ID, the UnsignedEvent to finish)`` in one pass.

    The event is checked once, then encoded whole by the compiled canonical encoder
    (``encode_checked``; assembling it from per-member texts cost the reactor about forty
    Python-level calls per event): the hashed body, the pruned form, which is both the
    signed message and the input of the reference hash (they are the same bytes: the pruned
    event without signatures), and the stored form's two halves around ``signatures``.
    The returned dict has no ``signatures``: they exist only in the finished bytes. Only
    for a fresh event dict without ``hashes``, ``signatures`` or ``unsigned``, whose
    content is a dict.
    """
    if not _fresh(event):
        raise BadEvent("build_unsigned_event takes a fresh event", None)
    check_json_value(event)
    hashes = {"sha256": encode_b64(hashlib.sha256(encode_checked(event)).digest())}
    hashed = dict(event)
    hashed["hashes"] = hashes
    message = encode_checked(prune_event(hashed))
    event_id = "$" + encode_b64url(hashlib.sha256(message).digest())
    head, tail = encode_around(hashed, "signatures")
    return hashed, event_id, UnsignedEvent(message, head, tail, str(server_name), key)


def build_signed_event(
    event: Mapping[str, Any], server_name: str, key: SigningKey
) -> Tuple[Dict[str, Any], str, bytes]:
    """``(sign_event(event), its event ID, canonical JSON of the signed event)`` in one pass.

    The same results as ``sign_event``, ``compute_event_id`` and ``encode_canonical`` called
    one after the other (tests compare them), through ``build_unsigned_event`` (decision
    0013). An event that already carries ``hashes``, ``signatures`` or ``unsigned`` takes
    the general path.
    """
    if not _fresh(event):
        signed = sign_event(event, server_name, key)
        return signed, str(compute_event_id(signed)), encode_canonical(signed)
    hashed, event_id, unsigned = build_unsigned_event(event, server_name, key)
    raw = unsigned.finish()
    hashed["signatures"] = {unsigned.server_name: {key.key_id: unsigned.signature}}
    return hashed, event_id, raw


def verify_event_signature(
    event: Mapping[str, Any], server_name: str, verify_keys: Mapping[str, VerifyKey]
) -> None:
    """Check ``server_name``'s signature on the pruned event; raises BadSignature."""
    verify_json(prune_event(event), str(server_name), verify_keys)


def _bad(field: str, reason: str) -> BadEvent:
    """A BadEvent whose reason starts with the field it names."""
    return BadEvent(f"{field}: {reason}", field)


def _check_short_str(event: Mapping[str, Any], field: str, *, empty_ok: bool) -> str:
    """The string at ``field``: present, a str, at most 255 UTF-8 bytes."""
    value = event.get(field)
    if type(value) is not str:
        raise _bad(field, "must be a string")
    if not empty_ok and not value:
        raise _bad(field, "must not be empty")
    if len(value) > MAX_ID_BYTES // 4 and len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise _bad(field, f"must be at most {MAX_ID_BYTES} bytes")
    return value


def _check_id(parse: Any, value: Any, field: str) -> None:
    """Parse an identifier, turning BadField into BadEvent for the same field."""
    try:
        parse(value, field)
    except BadField as e:
        raise BadEvent(e.reason, field) from None


def _check_event_ids(event: Mapping[str, Any], field: str, limit: int) -> None:
    """A list of at most ``limit`` event IDs."""
    ids = event.get(field)
    if type(ids) is not list:
        raise _bad(field, "must be a list of event IDs")
    if len(ids) > limit:
        raise _bad(field, f"must hold at most {limit} event IDs, not {len(ids)}")
    for i, event_id in enumerate(ids):
        _check_id(EventID.parse, event_id, f"{field}[{i}]")


def _check_signatures(event: Mapping[str, Any]) -> None:
    """``signatures`` is ``{server: {key_id: str}}``."""
    sigs = event.get("signatures")
    if type(sigs) is not dict:
        raise _bad("signatures", "must be an object")
    for by_key in sigs.values():
        if type(by_key) is not dict or any(type(s) is not str for s in by_key.values()):
            raise _bad("signatures", "must map server names to {key ID: signature string}")


def validate_event_format(event: Mapping[str, Any]) -> None:
    """Check ``event`` has the ``ps1`` format; raises BadEvent naming the field, or TooLarge.

    Also BadJSON if ``event`` is not in the strict JSON data model.  The create event has
    no ``room_id``, ``prev_events`` and ``auth_events`` absent or empty, and ``state_key`` "".
    ``event_id`` must not be present: it is always computed.
    """
    if type(event) is not dict:
        raise BadEvent("an event must be an object")
    size = len(encode_canonical(event))
    if size > MAX_PDU_BYTES:
        raise TooLarge(f"event is {size} bytes of canonical JSON; the limit is {MAX_PDU_BYTES}")
    etype = _check_short_str(event, "type", empty_ok=False)
    is_create = etype == CREATE
    _check_id(UserID.parse, event.get("sender"), "sender")
    if "event_id" in event:
        raise _bad("event_id", "must not be sent; the event ID is computed")
    if "state_key" in event:
        state_key = _check_short_str(event, "state_key", empty_ok=True)
        if is_create and state_key != "":
            raise _bad("state_key", "must be empty in m.room.create")
    elif is_create:
        raise _bad("state_key", "m.room.create needs state_key \"\"")
    if is_create:
        if "room_id" in event:
            raise _bad("room_id", "m.room.create has no room_id; the room ID is its event ID")
        for field in ("prev_events", "auth_events"):
            if field in event and event[field] != []:
                raise _bad(field, "must be empty or absent in m.room.create")
    else:
        if "room_id" not in event:
            raise BadEvent("room_id: missing", "room_id")
        _check_id(RoomID.parse, event["room_id"], "room_id")
        _check_event_ids(event, "prev_events", MAX_PREV_EVENTS)
        _check_event_ids(event, "auth_events", MAX_AUTH_EVENTS)
    if type(event.get("content")) is not dict:
        raise _bad("content", "must be an object")
    depth = event.get("depth")
    if type(depth) is not int or not 0 <= depth <= MAX_SAFE_INT:
        raise _bad("depth", "must be an integer in 0..2**53-1")
    ts = event.get("origin_server_ts")
    if type(ts) is not int or ts < 0:
        raise _bad("origin_server_ts", "must be a non-negative integer (ms)")
    hashes = event.get("hashes")
    if type(hashes) is not dict or type(hashes.get("sha256")) is not str:
        raise _bad("hashes", "must be an object with a sha256 string")
    _check_signatures(event)
    if "unsigned" in event and type(event["unsigned"]) is not dict:
        raise _bad("unsigned", "must be an object")


def to_client_event(
    event: Mapping[str, Any], event_id: str, pos: int, sender_pseudonym: str | None
) -> Dict[str, Any]:
    """The client form (docs/protocol.md §2) of a stored, validated event.

    ``content`` is shared, not copied: treat the result as read-only.  For the create event
    ``room_id`` is derived from ``event_id``.
    """
    room_id = event.get("room_id")
    if room_id is None:
        room_id = "!" + event_id[1:]
    out = {
        "pos": pos,
        "event_id": event_id,
        "room_id": room_id,
        "type": event["type"],
        "sender": event["sender"],
        "sender_pseudonym": sender_pseudonym,
        "content": event["content"],
        "origin_server_ts": event["origin_server_ts"],
    }
    if "state_key" in event:
        out["state_key"] = event["state_key"]
    return out
