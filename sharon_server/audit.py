"""The audit log: append-only, hash-chained, queryable, exportable, verifiable.

``AuditLog`` stores entries in ``audit_log`` (``storage/schema_audit.py``); the chain
arithmetic is ``rooms/audit_chain.py``. Appends are serialised inside a process (an
``asyncio.Lock``; the last ``(seq, hash)`` is kept in memory and loaded at start), and safe
across processes too: every append transaction holds the database's append lock (SQLite's
single writer lock, taken by ``BEGIN IMMEDIATE``; on PostgreSQL a transaction-level advisory
lock), and ``seq`` is the primary key, so if another process (a shell command) appended
meanwhile the insert fails, and the retry re-reads the head inside the locked transaction
and chains on top of it. Every entry is therefore chained to the one truly before it.

There is deliberately no update or delete path in this module. Database-level protection is
an operations choice, layered on top: migration 0008 installs triggers refusing UPDATE and
DELETE (TRUNCATE on PostgreSQL), and on PostgreSQL the server may run as a role with only
INSERT and SELECT on ``audit_log`` (``docs/audit.md``).

Details must never hold secrets or real identity: that is the caller's job (put user IDs
and reason codes in, never names, contacts, passwords or tokens). As a guard, ``append``
refuses details with any key, at any depth, that names a credential (``password``,
``passphrase``, ``token``, ``secret``, e.g. ``access_token``) and details larger than
``MAX_DETAILS_BYTES``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Callable, Dict, List, Mapping, Optional, TextIO, Tuple

import attr
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from protocol.canonical_json import decode_strict, encode_canonical
from rooms.audit_chain import GENESIS_PREV, ChainVerifier, VerifyResult, entry_hash, format_head
from sharon_server.storage.database import Database
from sharon_server.storage.schema_audit import audit_log

__all__ = [
    "AuditEntry",
    "AuditLog",
    "open_audit",
    "entry_from_json",
    "MAX_DETAILS_BYTES",
    "FORBIDDEN_KEY_WORDS",
    "VERIFY_PAGE",
]

MAX_DETAILS_BYTES = 16 * 1024
"""Largest canonical JSON encoding of one entry's details."""

FORBIDDEN_KEY_WORDS = ("password", "passphrase", "token", "secret")
"""A details key containing any of these (case-insensitive) is refused."""

VERIFY_PAGE = 1000
"""Rows read per page while verifying or exporting (bounds memory)."""

MAX_QUERY_LIMIT = 1000
_APPEND_RETRIES = 3
_PG_APPEND_LOCK = 0x5348_4155  # pg_advisory_xact_lock key: one audit append at a time


@attr.s(frozen=True, slots=True, auto_attribs=True)
class AuditEntry:
    """One stored audit entry."""

    seq: int
    ts: int
    actor: str
    action: str
    member: Optional[str]
    service: Optional[str]
    details: Dict[str, Any]
    prev_hash: bytes
    hash: bytes

    def as_chain_entry(self) -> Dict[str, Any]:
        """The mapping ``rooms.audit_chain`` hashes and verifies."""
        return attr.asdict(self, recurse=False)

    def to_json(self) -> Dict[str, Any]:
        """The export form: hashes in hex; every field, so an export can be verified."""
        d = attr.asdict(self, recurse=False)
        d["prev_hash"] = self.prev_hash.hex()
        d["hash"] = self.hash.hex()
        return d


def entry_from_json(obj: Mapping[str, Any]) -> AuditEntry:
    """Parse one exported line's object back into an ``AuditEntry`` (raises on bad input)."""
    return AuditEntry(
        seq=obj["seq"],
        ts=obj["ts"],
        actor=obj["actor"],
        action=obj["action"],
        member=obj["member"],
        service=obj["service"],
        details=obj["details"],
        prev_hash=bytes.fromhex(obj["prev_hash"]),
        hash=bytes.fromhex(obj["hash"]),
    )


def _check_details(details: Any, path: str = "details") -> None:
    if isinstance(details, dict):
        for key, value in details.items():
            lowered = str(key).lower()
            if any(word in lowered for word in FORBIDDEN_KEY_WORDS):
                raise ValueError(f"audit {path} must not hold secrets: key {key!r} is refused")
            _check_details(value, f"{path}.{key}")
    elif isinstance(details, list):
        for i, value in enumerate(details):
            _check_details(value, f"{path}[{i}]")


def _row_to_entry(row: Any) -> Dict[str, Any]:
    """A stored row as a chain entry; details that are not canonical JSON stay a str.

    A str ``details`` fails ``entry_hash``'s type check, so the verifier reports the row as
    edited (the server only ever stores canonical JSON objects).
    """
    details: Any = row.details
    try:
        parsed = decode_strict(row.details)
        if type(parsed) is dict and encode_canonical(parsed).decode("utf-8") == row.details:
            details = parsed
    except Exception:  # noqa: BLE001 - unparsable details: an edit, reported by the verifier
        pass
    return {
        "seq": row.seq,
        "ts": row.ts,
        "actor": row.actor,
        "action": row.action,
        "member": row.member,
        "service": row.service,
        "details": details,
        "prev_hash": bytes(row.prev_hash),
        "hash": bytes(row.hash),
    }


def _entry(row: Any) -> AuditEntry:
    d = _row_to_entry(row)
    if type(d["details"]) is not dict:
        d["details"] = {"_unparsable": d["details"]}
    return AuditEntry(**d)


class AuditLog:
    """The audit log of one database; create with ``open_audit`` (loads the head)."""

    def __init__(self, db: Database, now_ms: Callable[[], int]) -> None:
        self._db = db
        self._now_ms = now_ms
        self._lock = asyncio.Lock()
        self._seq = 0
        self._hash = GENESIS_PREV
        self._loaded = False

    # --- the head ---------------------------------------------------------------------------

    async def load_head(self) -> Tuple[int, bytes]:
        """Read the newest entry's (seq, hash) from the database into memory."""
        async with self._db.read_engine.connect() as conn:
            self._seq, self._hash = await self._read_head(conn)
        self._loaded = True
        return self._seq, self._hash

    @staticmethod
    async def _read_head(conn: Any) -> Tuple[int, bytes]:
        stmt = sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        row = (await conn.execute(stmt)).first()
        return (row.seq, bytes(row.hash)) if row is not None else (0, GENESIS_PREV)

    def head(self) -> Tuple[int, bytes]:
        """The last appended (seq, hash) known to this process: an anchor to record elsewhere.

        ``(0, 32 zero bytes)`` for an empty log. ``format_head`` prints it as ``SEQ:HASH``.
        """
        return self._seq, self._hash

    def head_text(self) -> str:
        """``head()`` as ``SEQ:HEXHASH`` (what ``audit verify --expect-head`` takes)."""
        return format_head(self._seq, self._hash)

    # --- appending --------------------------------------------------------------------------

    async def append(
        self,
        actor: str,
        action: str,
        *,
        member: Optional[str] = None,
        service: Optional[str] = None,
        details: Optional[Mapping[str, Any]] = None,
    ) -> AuditEntry:
        """Append one entry chained to the newest; returns it once committed.

        Raises ``ValueError`` for a malformed entry or details naming a secret, and
        ``protocol.errors.BadJSON`` for details outside the JSON data model.
        """
        d: Dict[str, Any] = dict(details) if details is not None else {}
        _check_details(d)
        details_text = encode_canonical(d).decode("utf-8")
        if len(details_text.encode("utf-8")) > MAX_DETAILS_BYTES:
            raise ValueError(f"audit details exceed {MAX_DETAILS_BYTES} bytes")
        d = decode_strict(details_text)  # a deep copy: later changes by the caller cannot leak in
        async with self._lock:
            stale = not self._loaded
            for _attempt in range(_APPEND_RETRIES):
                try:
                    async with self._db.engine.begin() as conn:
                        if self._db.dialect == "postgresql":
                            # Appenders in every process take this lock (SQLite's writer lock,
                            # BEGIN IMMEDIATE, does the same there), so a head read inside the
                            # transaction is the true head.
                            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPEND_LOCK})
                        if stale:
                            self._seq, self._hash = await self._read_head(conn)
                            self._loaded, stale = True, False
                        fields = {
                            "seq": self._seq + 1,
                            "ts": int(self._now_ms()),
                            "actor": actor,
                            "action": action,
                            "member": member,
                            "service": service,
                            "details": d,
                        }
                        prev = self._hash
                        h = entry_hash(prev, fields)  # validates the fields too
                        row = dict(fields, details=details_text, prev_hash=prev, hash=h)
                        await conn.execute(sa.insert(audit_log).values(**row))
                except IntegrityError:
                    # Another process appended this seq: re-read the head under the lock.
                    stale = True
                    continue
                self._seq, self._hash = fields["seq"], h
                return AuditEntry(**fields, prev_hash=prev, hash=h)
            raise RuntimeError("audit append: could not claim the next seq")

    # --- reading ----------------------------------------------------------------------------

    @staticmethod
    def _where(
        actor: Optional[str],
        member: Optional[str],
        action: Optional[str],
        since_ms: Optional[int],
        until_ms: Optional[int],
    ) -> List[Any]:
        c = audit_log.c
        conds: List[Any] = []
        if actor is not None:
            conds.append(c.actor == actor)
        if member is not None:
            conds.append(c.member == member)
        if action is not None:
            conds.append(c.action == action)
        if since_ms is not None:
            conds.append(c.ts >= since_ms)
        if until_ms is not None:
            conds.append(c.ts < until_ms)
        return conds

    async def query(
        self,
        actor: Optional[str] = None,
        member: Optional[str] = None,
        action: Optional[str] = None,
        since_ms: Optional[int] = None,
        until_ms: Optional[int] = None,
        limit: int = 100,
        before_seq: Optional[int] = None,
    ) -> List[AuditEntry]:
        """Entries matching every given filter, newest first, at most ``limit`` (≤ 1000).

        ``since_ms`` is inclusive, ``until_ms`` exclusive. Page backwards by passing the
        last returned entry's seq as ``before_seq``.
        """
        limit = max(1, min(int(limit), MAX_QUERY_LIMIT))
        conds = self._where(actor, member, action, since_ms, until_ms)
        if before_seq is not None:
            conds.append(audit_log.c.seq < before_seq)
        stmt = sa.select(audit_log).where(*conds).order_by(audit_log.c.seq.desc()).limit(limit)
        async with self._db.read_engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_entry(r) for r in rows]

    async def _pages(self, conds: List[Any], page: int = VERIFY_PAGE) -> AsyncIterator[List[Any]]:
        """Rows matching ``conds`` in ascending seq order, a page at a time (keyset paging)."""
        after = 0
        while True:
            stmt = (
                sa.select(audit_log)
                .where(audit_log.c.seq > after, *conds)
                .order_by(audit_log.c.seq)
                .limit(page)
            )
            async with self._db.read_engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
            if not rows:
                return
            yield rows
            after = rows[-1].seq
            if len(rows) < page:
                return

    async def export(
        self,
        stream: TextIO,
        *,
        actor: Optional[str] = None,
        member: Optional[str] = None,
        action: Optional[str] = None,
        since_ms: Optional[int] = None,
        until_ms: Optional[int] = None,
    ) -> int:
        """Write matching entries, oldest first, as JSON lines to ``stream``; returns the count.

        Each line carries every field and both hashes (hex), so an unfiltered export can be
        verified offline with ``rooms.audit_chain.verify_chain`` (see ``entry_from_json``).
        """
        conds = self._where(actor, member, action, since_ms, until_ms)
        n = 0
        async for rows in self._pages(conds):
            for r in rows:
                stream.write(json.dumps(_entry(r).to_json(), ensure_ascii=False, sort_keys=True) + "\n")
                n += 1
        return n

    async def verify(
        self,
        expect_head: Optional[Tuple[int, bytes]] = None,
        *,
        progress: Optional[Callable[[int], None]] = None,
        page: int = VERIFY_PAGE,
    ) -> VerifyResult:
        """Verify the whole stored chain in seq order, ``page`` rows at a time.

        ``expect_head`` (an anchor recorded earlier) also catches truncation and re-hashed
        rewrites. ``progress(checked)`` is called after each page.
        """
        v = ChainVerifier(expect_head)
        async for rows in self._pages([], page):
            for r in rows:
                if not v.feed(_row_to_entry(r)):
                    return v.result()
            if progress is not None:
                progress(v.result().checked)
        return v.result()


async def open_audit(db: Database, now_ms: Callable[[], int]) -> AuditLog:
    """An ``AuditLog`` on ``db`` with its head loaded (call once at server start)."""
    log = AuditLog(db, now_ms)
    await log.load_head()
    return log

