"""Accounts and devices: register, login, token authentication, logout.

Passwords are hashed with Argon2id (memory-hard) in a worker thread so the reactor keeps
serving. Tokens are 256-bit random strings; only their SHA-256 is stored, compared by the
database lookup of that digest. A bounded LRU cache keeps hot tokens off the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import unicodedata
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

import attr
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from protocol.b64 import encode_b64url
from protocol.errors import BadCredentials, InvalidPseudonym, UnknownToken, WeakPassword
from protocol.ids import UserID

__all__ = ["Session", "AccountService", "normalise_pseudonym"]

_PSEUDONYM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{2,31}$")
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_DEVICE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
TOKEN_PREFIX = "shr_"


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Session:
    """Who a connection or request is authenticated as."""

    user_id: str
    device_id: str
    pseudonym: str
    token_hash: bytes

    def as_result(self, token: Optional[str] = None) -> Dict[str, str]:
        """What ``register``/``login``/``auth`` answer: IDs and pseudonym (and the new token)."""
        out = {"user_id": self.user_id, "pseudonym": self.pseudonym, "device_id": self.device_id}
        if token is not None:
            out["token"] = token
        return out


def normalise_pseudonym(raw: str) -> Tuple[str, str]:
    """Return (pseudonym, case-folded key) after NFKC; raise InvalidPseudonym if it breaks the rules."""
    pseudonym = unicodedata.normalize("NFKC", raw).strip()
    if not _PSEUDONYM_RE.match(pseudonym):
        raise InvalidPseudonym(
            "a pseudonym is 3-32 characters of letters, digits, '_', '-' and '.', starting with a letter or digit",
            "pseudonym",
        )
    return pseudonym, pseudonym.casefold()


def _check_password(password: str) -> None:
    size = len(password.encode("utf-8", "surrogatepass"))
    if size < 8:
        raise WeakPassword("a password must be at least 8 bytes long", "password")
    if size > 1024:
        raise WeakPassword("a password must be at most 1024 bytes long", "password")


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _random_chars(alphabet: str, n: int) -> str:
    raw = os.urandom(n)
    return "".join(alphabet[b % len(alphabet)] for b in raw)


class AccountService:
    """Registration, login and token checks over an AccountStore."""

    def __init__(self, store, server_name: str, now_ms: Callable[[], int], *,
                 time_cost: int, memory_kib: int, parallelism: int, token_cache_size: int) -> None:
        self._store = store
        self._server_name = server_name
        self._now_ms = now_ms
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._tokens: "OrderedDict[bytes, Session]" = OrderedDict()
        self._token_cache_size = token_cache_size
        self.pseudonyms: Dict[str, str] = {}
        self.on_revoke: List[Callable[[bytes], None]] = []
        self.gates: List[Callable[[str], None]] = []
        """``gate(user_id)`` raises a SharonError to refuse a login or token (e.g. a
        suspended account); called on every login and authentication, so keep it O(1)."""
        # A real hash to verify against when the pseudonym is unknown, so that a miss and a
        # wrong password take the same time and do not reveal which pseudonyms exist.
        self._dummy_hash = self._hasher.hash(os.urandom(16).hex())

    async def load(self) -> None:
        """Load every account's pseudonym into memory (peers see pseudonyms on every event)."""
        self.pseudonyms = await self._store.pseudonyms()

    def pseudonym_of(self, user_id: str) -> Optional[str]:
        """The current pseudonym of a local user, or None if unknown."""
        return self.pseudonyms.get(user_id)

    async def register(self, pseudonym: str, password: str, device_name: Optional[str]) -> Tuple[Session, str]:
        """Create an account and its first device; returns the session and its new token."""
        pseudonym, key = normalise_pseudonym(pseudonym)
        _check_password(password)
        loop = asyncio.get_running_loop()
        password_hash = await loop.run_in_executor(None, self._hasher.hash, password)
        user_id = str(UserID.parse(f"@u{_random_chars(_BASE32, 12)}:{self._server_name}"))
        await self._store.create_account(user_id, pseudonym, key, password_hash, self._now_ms())
        self.pseudonyms[user_id] = pseudonym
        return await self._new_device(user_id, pseudonym, device_name)

    async def login(self, pseudonym: str, password: str, device_name: Optional[str]) -> Tuple[Session, str]:
        """Check the password and open a new device; BadCredentials if either part is wrong."""
        try:
            _, key = normalise_pseudonym(pseudonym)
        except InvalidPseudonym:
            key = None
        row = await self._store.get_by_pseudonym_key(key) if key else None
        loop = asyncio.get_running_loop()
        stored = row.password_hash if row is not None else self._dummy_hash
        ok = await loop.run_in_executor(None, self._verify, stored, password)
        if row is None or not ok:
            raise BadCredentials("unknown pseudonym or wrong password")
        for gate in self.gates:
            gate(row.user_id)
        return await self._new_device(row.user_id, row.pseudonym, device_name)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _new_device(self, user_id: str, pseudonym: str, device_name: Optional[str]) -> Tuple[Session, str]:
        token = TOKEN_PREFIX + encode_b64url(os.urandom(32))
        device_id = _random_chars(_DEVICE_CHARS, 10)
        digest = _token_hash(token)
        await self._store.create_device(user_id, device_id, device_name, digest, self._now_ms())
        session = Session(user_id, device_id, pseudonym, digest)
        self._remember(session)
        return session, token

    def _remember(self, session: Session) -> None:
        self._tokens[session.token_hash] = session
        self._tokens.move_to_end(session.token_hash)
        while len(self._tokens) > self._token_cache_size:
            self._tokens.popitem(last=False)

    async def authenticate(self, token: str) -> Session:
        """The session a token belongs to; UnknownToken if it is unknown or logged out."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
            raise UnknownToken("unknown or revoked access token", "token")
        digest = _token_hash(token)
        cached = self._tokens.get(digest)
        if cached is not None:
            for gate in self.gates:
                gate(cached.user_id)
            self._tokens.move_to_end(digest)
            return cached
        row = await self._store.device_for_token(digest)
        if row is None:
            raise UnknownToken("unknown or revoked access token", "token")
        for gate in self.gates:
            gate(row.user_id)
        session = Session(row.user_id, row.device_id, self.pseudonyms.get(row.user_id, ""), digest)
        self._remember(session)
        return session

    async def logout(self, session: Session) -> None:
        """Revoke the session's device and token, everywhere it is in use."""
        self._tokens.pop(session.token_hash, None)
        await self._store.delete_device(session.user_id, session.device_id)
        for listener in self.on_revoke:
            listener(session.token_hash)

    async def revoke_user(self, user_id: str) -> int:
        """Revoke every device and token of ``user_id`` (a suspension); returns how many."""
        devices = await self._store.devices(user_id)
        for device in devices:
            self._tokens.pop(device.token_hash, None)
            await self._store.delete_device(user_id, device.device_id)
            for listener in self.on_revoke:
                listener(device.token_hash)
        return len(devices)

    def cache_size(self) -> int:
        """How many sessions the token cache holds (for memory reporting)."""
        return len(self._tokens)
