"""The audit log's entry format and hash-chain arithmetic (pure: no I/O, no clock).

Every audit entry is chained to the one before it::

    hash(n) = SHA-256( DOMAIN || canonical_json({seq, ts, actor, action, member,
                                                  service, details, prev: hex(hash(n-1))}) )

with ``hash(0)``, the genesis ``prev``, being 32 zero bytes and ``seq`` counting 1, 2, 3, ...
without gaps. ``DOMAIN`` separates these hashes from every other SHA-256 the server computes
(event IDs, token digests), so an audit hash can never be replayed as anything else. The
payload is encoded with ``protocol.canonical_json.encode_canonical`` (sorted keys, compact,
integers only), so the same entry always hashes to the same bytes on any backend.

What a chain detects, and what it does not:

- an **edited** entry (any field, including its stored ``prev_hash`` or ``hash``): its
  recomputed hash no longer matches the stored one;
- a **deleted** entry or **reordered** entries: ``seq`` stops counting up by one, or an
  entry's ``prev_hash`` is not the hash of the entry before it;
- a first entry that does not start from the zero hash: **bad genesis**.

A chain alone cannot detect **truncation of its tail** (the remaining prefix is itself a
valid chain), nor a wholesale **rewrite** in which an attacker with write access edits an
entry and recomputes every later hash. Both are caught by an *anchor*: the head
``(seq, hash)`` recorded somewhere the attacker cannot write (the server prints it on every
start and ``sharon-server audit verify`` prints it; operators copy it to a ticket, a
separate log host, a notebook). ``verify_chain(..., expect_head=(seq, hash))`` then
requires that the chain still reaches ``seq`` and that the entry there has exactly that
hash: everything up to the anchor is then exactly what it was when the anchor was taken.

``first_bad_seq`` is the sequence number at which the chain breaks, i.e. the ``seq`` the
verifier expected at that point: the edited entry's seq, the first deleted seq, the first
position of a reordering, 1 for a bad genesis, the anchor's seq for a truncated or
rewritten log.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Iterable, Mapping, Optional, Tuple

import attr

from protocol.canonical_json import MAX_SAFE_INT, encode_canonical

__all__ = [
    "DOMAIN",
    "GENESIS_PREV",
    "HASH_LEN",
    "ENTRY_FIELDS",
    "REASON_EDITED",
    "REASON_DELETED_OR_REORDERED",
    "REASON_BAD_GENESIS",
    "REASON_TRUNCATED",
    "REASON_HEAD_MISMATCH",
    "VerifyResult",
    "ChainVerifier",
    "entry_hash",
    "verify_chain",
    "format_head",
    "parse_head",
]

DOMAIN = b"sharon.audit.v1\x00"
"""Prefix of every hashed audit payload (domain separation)."""

HASH_LEN = 32
GENESIS_PREV = bytes(HASH_LEN)
"""The ``prev`` of entry 1: 32 zero bytes."""

ENTRY_FIELDS = ("seq", "ts", "actor", "action", "member", "service", "details")
"""The fields of an entry that its hash covers (``prev`` is the previous entry's hash)."""

REASON_EDITED = "edited"
REASON_DELETED_OR_REORDERED = "deleted or reordered"
REASON_BAD_GENESIS = "bad genesis"
REASON_TRUNCATED = "truncated"
"""The log ends before the expected head's seq (entries removed from the tail)."""
REASON_HEAD_MISMATCH = "head mismatch"
"""The entry at the expected head's seq has another hash (history rewritten and re-hashed)."""


def _check_entry(entry: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if an entry's covered fields have the wrong types."""
    for name in ("seq", "ts"):
        v = entry[name]
        if type(v) is not int or not 0 <= v <= MAX_SAFE_INT:
            raise ValueError(f"audit entry {name} must be a non-negative int, got {v!r}")
    for name in ("actor", "action"):
        if type(entry[name]) is not str or not entry[name]:
            raise ValueError(f"audit entry {name} must be a non-empty str")
    for name in ("member", "service"):
        if entry[name] is not None and type(entry[name]) is not str:
            raise ValueError(f"audit entry {name} must be a str or None")
    if type(entry["details"]) is not dict:
        raise ValueError("audit entry details must be a dict")


def entry_hash(prev_hash: bytes, entry: Mapping[str, Any]) -> bytes:
    """SHA-256 of the domain-separated canonical JSON of ``entry``'s fields and ``prev_hash``.

    ``entry`` needs ``seq``, ``ts``, ``actor``, ``action``, ``member``, ``service`` and
    ``details`` (a JSON object); other keys (a stored ``hash``, ``prev_hash``) are ignored.
    Raises ``ValueError`` for a malformed entry and ``protocol.errors.BadJSON`` for details
    outside the strict JSON data model.
    """
    if type(prev_hash) is not bytes or len(prev_hash) != HASH_LEN:
        raise ValueError("prev_hash must be 32 bytes")
    _check_entry(entry)
    payload = {name: entry[name] for name in ENTRY_FIELDS}
    payload["prev"] = prev_hash.hex()
    return hashlib.sha256(DOMAIN + encode_canonical(payload)).digest()


@attr.s(frozen=True, slots=True, auto_attribs=True)
class VerifyResult:
    """The outcome of verifying a chain (or a prefix of it, up to the first break)."""

    ok: bool
    checked: int
    """Entries verified good (all of them when ``ok``; those before the break otherwise)."""
    first_bad_seq: Optional[int] = None
    """The seq at which the chain breaks (see the module docstring); None when ok."""
    reason: Optional[str] = None
    """``"edited"``, ``"deleted or reordered"``, ``"bad genesis"``, ``"truncated"`` or
    ``"head mismatch"``; None when ok."""
    head_seq: int = 0
    """The seq of the last good entry (0: none)."""
    head_hash: bytes = GENESIS_PREV
    """The hash of the last good entry (the zero hash: none)."""

    @property
    def head(self) -> str:
        """The last good entry as ``SEQ:HEXHASH`` (what ``--expect-head`` takes)."""
        return format_head(self.head_seq, self.head_hash)


class ChainVerifier:
    """Incremental verification: ``feed`` entries in order, then ``result()``.

    Lets a caller stream a large log in pages with bounded memory. After the first break
    ``feed`` returns False and ignores further entries.
    """

    def __init__(self, expect_head: Optional[Tuple[int, bytes]] = None) -> None:
        self._expect = expect_head
        self._checked = 0
        self._seq = 0
        self._hash = GENESIS_PREV
        self._bad: Optional[Tuple[int, str]] = None
        self._anchor_seen = expect_head is None or expect_head[0] == 0

        if expect_head is not None:
            seq, h = expect_head
            if type(seq) is not int or seq < 0 or type(h) is not bytes or len(h) != HASH_LEN:
                raise ValueError("expect_head must be (seq >= 0, 32-byte hash)")
            if seq == 0 and h != GENESIS_PREV:
                self._bad = (0, REASON_HEAD_MISMATCH)

    @property
    def broken(self) -> bool:
        return self._bad is not None

    def feed(self, entry: Mapping[str, Any]) -> bool:
        """Check the next entry; False once the chain is broken (here or earlier)."""
        if self._bad is not None:
            return False
        expected = self._seq + 1
        reason = self._check(entry, expected)
        if reason is not None:
            self._bad = (expected, reason)
            return False
        self._seq, self._hash = expected, entry["hash"]
        self._checked += 1
        if self._expect is not None and expected == self._expect[0]:
            self._anchor_seen = True
            if not hmac.compare_digest(self._hash, self._expect[1]):
                self._bad = (expected, REASON_HEAD_MISMATCH)
                return False
        return True

    def _check(self, entry: Mapping[str, Any], expected: int) -> Optional[str]:
        # 1. Self-consistency: the stored hash is the hash of the stored fields and prev.
        try:
            stored_prev = entry["prev_hash"]
            stored_hash = entry["hash"]
            if type(stored_hash) is not bytes or len(stored_hash) != HASH_LEN:
                return REASON_EDITED
            recomputed = entry_hash(stored_prev, entry)
        except Exception:  # noqa: BLE001 - any malformed field is an edit
            return REASON_EDITED
        if not hmac.compare_digest(recomputed, stored_hash):
            return REASON_EDITED
        # 2. Position: seq counts up by one and prev is the hash before it.
        if entry["seq"] != expected:
            return REASON_DELETED_OR_REORDERED
        if stored_prev != self._hash:
            return REASON_BAD_GENESIS if expected == 1 else REASON_DELETED_OR_REORDERED
        return None

    def result(self) -> VerifyResult:
        """The verdict so far (call after the last entry)."""
        bad = self._bad
        if bad is None and not self._anchor_seen:
            assert self._expect is not None
            bad = (self._expect[0], REASON_TRUNCATED)
        if bad is None:
            return VerifyResult(True, self._checked, None, None, self._seq, self._hash)
        return VerifyResult(False, self._checked, bad[0], bad[1], self._seq, self._hash)


def verify_chain(
    entries: Iterable[Mapping[str, Any]], *, expect_head: Optional[Tuple[int, bytes]] = None
) -> VerifyResult:
    """Verify entries given in chain order (seq 1 first); stops at the first break.

    Each entry is a mapping with the ``ENTRY_FIELDS`` plus ``prev_hash`` and ``hash``
    (bytes). ``expect_head`` = ``(seq, hash)`` from an anchor additionally requires the
    chain to reach that seq with exactly that hash (detects truncation and rewrites).
    """
    v = ChainVerifier(expect_head)
    for entry in entries:
        if not v.feed(entry):
            break
    return v.result()


def format_head(seq: int, head_hash: bytes) -> str:
    """``SEQ:HEXHASH``, the printable form of a head anchor."""
    return f"{seq}:{head_hash.hex()}"


def parse_head(text: str) -> Tuple[int, bytes]:
    """Parse ``SEQ:HEXHASH`` (as printed by ``format_head``); raises ``ValueError``."""
    seq_text, sep, hex_text = text.strip().partition(":")
    if not sep or not (seq_text.isascii() and seq_text.isdigit()) or len(hex_text) != 2 * HASH_LEN:
        raise ValueError(f"expected SEQ:HASH (64 hex digits), got {text!r}")
    try:
        h = bytes.fromhex(hex_text)
    except ValueError:
        raise ValueError(f"expected SEQ:HASH (64 hex digits), got {text!r}") from None
    return int(seq_text), h
