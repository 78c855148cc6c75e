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
from typing import Any, Callable, Dict, List, Optional, Tuple

import attr
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from protocol.b64 import encode_b64url
from protocol.errors import (
    BadCredentials, InvalidPseudonym, InviteCodeInvalid, PseudonymRejected, PseudonymTaken, UnknownToken,
    WeakPassword,
)
from protocol.ids import UserID

__all__ = ["Session", "AccountService", "normalise_pseudonym", "PseudonymScreen", "BUILTIN_BLOCKLIST",
           "read_blocklist", "pseudonym_skeleton"]

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


# -- pseudonym screening ---------------------------------------------------------------

STAFF_TITLES = (
    "admin", "administrator", "moderator", "mod", "clinician", "nhs", "sharon", "staff", "official",
    "doctor", "nurse", "therapist", "psychiatrist", "psychologist", "counsellor", "counselor",
    "helpdesk", "sysop",
)
"""Titles a member's pseudonym may not claim: peers must not be able to pose as staff."""

ABUSIVE_WORDS = (
    "fuck", "fucker", "fucking", "shit", "cunt", "bitch", "whore", "slut", "twat", "wanker",
    "nigger", "nigga", "faggot", "retard", "rape", "rapist", "paedo", "pedo", "nonce",
    "kys", "killyourself", "killurself",
)
"""A short list of abusive or harmful words (and self-harm incitement) for a support space."""

CONTACT_WORDS = (
    "gmail", "hotmail", "outlook", "yahoo", "icloud", "protonmail", "instagram", "insta", "snapchat",
    "tiktok", "twitter", "facebook", "discord", "telegram", "whatsapp", "kik", "onlyfans", "http", "www",
)
"""Mail providers and social sites: a pseudonym must not point peers to contact off-platform."""

BUILTIN_BLOCKLIST = STAFF_TITLES + ABUSIVE_WORDS

_LEET = str.maketrans({"0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t",
                       "8": "b", "9": "g", "@": "a", "$": "s", "!": "i", "|": "i", "+": "t"})
_SEPARATORS = re.compile(r"[\s_.\-]+")
_EMAILISH = re.compile(r"@|(^|[._\-])at[._\-].+[._\-]dot([._\-]|$)")
_TLD = re.compile(r"[._\-](com|net|org|uk|io|co|info|gov|nhs|edu|app|dev|xyz|me|biz|ly)([._\-]|$)")
_DIGIT_RUN = re.compile(r"\+?\d(?:[\s()._\-]*\d){6,}")
_DATE = re.compile(r"\d{1,4}[._\-]\d{1,2}[._\-]\d{1,4}")
_DIGITS = re.compile(r"\d+")
_LETTERS = re.compile(r"[a-z]+")
SHORT_WORD = 4
"""Block-list entries of at most this many letters match whole words only (``mod`` blocks
``mod`` and ``the.mod`` but not ``modest``); longer ones match anywhere, through separators
and leet digits (``adm1n``, ``m.o.d.e.r.a.t.o.r``)."""


def _skeleton(text: str) -> str:
    """Case-folded, leet digits mapped to letters, separators removed."""
    return _SEPARATORS.sub("", text.casefold().translate(_LEET))


_CONFUSABLES = str.maketrans({
    # Cyrillic and Greek letters that look like Latin ones (lower case: applied after casefold).
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ӏ": "l", "һ": "h", "ԛ": "q", "ԝ": "w", "ү": "y", "ь": "b", "з": "3", "α": "a", "β": "b",
    "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ω": "w", "γ": "y", "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ɡ": "g",
})
_LOOKALIKE = str.maketrans({"l": "i"})
"""After leet mapping (``1``, ``|`` and ``!`` read as ``i``): ``l`` and ``i`` look alike too."""
_DIGRAPHS = (("rn", "m"), ("vv", "w"))
_SKELETON_LEET = {**_LEET, ord("9"): "q"}
"""The screening's leet map, but one letter per digit (``6`` and ``9`` do not look alike:
``sam6`` and ``sam9`` are different people)."""


def pseudonym_skeleton(pseudonym: str) -> str:
    """The pseudonym as it reads at a glance: NFKC, accents dropped, case-folded, look-alike
    letters of other scripts mapped to Latin, leet digits mapped to letters (the screening's
    ``_LEET``), ``l``/``i`` merged, ``rn``->``m``, ``vv``->``w``, separators removed.

    Two pseudonyms with the same skeleton are confusable (``alice``, ``A1ice``, ``a.lice``,
    ``al1ce``, Cyrillic ``аlice``); accounts keep it under a unique index so no one can
    register a look-alike of a peer's or a moderator's pseudonym."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", pseudonym))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold().translate(_CONFUSABLES)
    text = _SEPARATORS.sub("", text.translate(_SKELETON_LEET)).translate(_LOOKALIKE)
    for pair, single in _DIGRAPHS:
        text = text.replace(pair, single)
    return text


def _words(text: str) -> list:
    """The words of ``text``: split at separators, and at letter/digit boundaries."""
    out = []
    for part in _SEPARATORS.split(text.casefold()):
        if part:
            out.append(part.translate(_LEET))
            out.extend(_LETTERS.findall(part))
    return out


def read_blocklist(path: str) -> list:
    """Entries of a block-list file: one per line, ``#`` starts a comment, blanks ignored."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry = line.split("#", 1)[0].strip()
            if entry:
                entries.append(entry)
    return entries


class PseudonymScreen:
    """The screening every new pseudonym passes (docs/protocol.md §8.5).

    ``check(pseudonym, personal)`` raises ``PseudonymRejected`` naming the rule; it never
    echoes the matched text (which may be the member's own identity)."""

    def __init__(self, extra: tuple = ()) -> None:
        self.set_extra(extra)

    def set_extra(self, extra) -> None:
        """Replace the operator's block-list entries (``config.pseudonym_blocklist``)."""
        self._lists = [("staff", STAFF_TITLES), ("abusive", ABUSIVE_WORDS), ("contact", CONTACT_WORDS),
                       ("blocklist", tuple(e for e in extra if e))]
        self._compiled = [(rule, [(_skeleton(w), len(_skeleton(w)) <= SHORT_WORD) for w in words if _skeleton(w)])
                          for rule, words in self._lists]

    _REASONS = {
        "staff": "it uses a staff or service title, which could make peers think you are staff",
        "abusive": "it contains a word that is not allowed here",
        "contact": "it points to an email provider, website or social media account",
        "blocklist": "it contains a word this server does not allow",
    }

    def check(self, pseudonym: str, personal: tuple = ()) -> None:
        """Raise PseudonymRejected (field ``pseudonym``) if ``pseudonym`` fails a rule."""
        def reject(why: str) -> None:
            raise PseudonymRejected(f"choose another pseudonym: {why}", "pseudonym")

        folded = pseudonym.casefold()
        if _EMAILISH.search(folded) or _TLD.search(folded):
            reject("it looks like an email address or a web address")
        if _DATE.search(folded):
            reject("it looks like a date")
        for run in _DIGIT_RUN.findall(folded):
            digits = re.sub(r"\D", "", run)
            if len(digits) == 10:
                reject("it looks like an NHS number or a phone number")
            reject("it looks like a phone number (more than 6 digits in a row)")
        skeleton, words = _skeleton(pseudonym), set(_words(pseudonym))
        for rule, entries in self._compiled:
            for word, short in entries:
                if (word in words or word == skeleton) if short else (word in skeleton):
                    reject(self._REASONS[rule])
        self._check_personal(folded, skeleton, personal)

    @staticmethod
    def _check_personal(folded: str, skeleton: str, personal: tuple) -> None:
        """The invited person's own names and birth date (from the invite's vault record)."""
        name, dob = (personal + ("", ""))[:2]
        plain = _SEPARATORS.sub("", folded)
        for part in re.split(r"[^\w]+", name.casefold()):
            if len(part) >= 3 and (part in plain or part in skeleton):
                raise PseudonymRejected("choose another pseudonym: it contains part of your real name",
                                        "pseudonym")
        if dob:
            year, month, day = dob.split("-")
            digits = "".join(_DIGITS.findall(folded))
            forms = {year, day + month, month + day, day + month + year[2:], year[2:] + month + day}
            if any(len(f) >= 4 and f in digits for f in forms):
                raise PseudonymRejected("choose another pseudonym: it contains your date of birth", "pseudonym")


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
        self.skeletons: Dict[str, str] = {}
        """``pseudonym_skeleton`` -> user ID of every account (a look-alike is refused at once)."""
        self.on_revoke: List[Callable[[bytes], None]] = []
        self.screen = PseudonymScreen()
        """Pseudonym screening; the invites feature adds ``config.pseudonym_blocklist``."""
        self.invite_redeemer: Optional[Callable[..., Any]] = None
        """``async (pseudonym, password, device_name, code) -> (Session, token)``, set by invites."""
        self.gates: List[Callable[[str], None]] = []
        """``gate(user_id)`` raises a SharonError to refuse a login or token (e.g. a
        suspended account); called on every login and authentication, so keep it O(1)."""
        # A real hash to verify against when the pseudonym is unknown, so that a miss and a
        # wrong password take the same time and do not reveal which pseudonyms exist. Made
        # in a worker thread once the server listens, not here: with the production Argon2id
        # settings it takes ~0.5-1 s and 64 MiB, which held up start-up (decision 0015).
        self._dummy_hash: "Optional[asyncio.Future[str]]" = None

    def prepare_dummy_hash(self) -> "asyncio.Future[str]":
        """The dummy hash, started in a worker thread on first call (the server calls this
        right after it starts listening)."""
        if self._dummy_hash is None:
            loop = asyncio.get_running_loop()
            self._dummy_hash = loop.run_in_executor(None, self._hasher.hash, os.urandom(16).hex())
        return self._dummy_hash

    async def load(self) -> None:
        """Load every account's pseudonym into memory (peers see pseudonyms on every event)."""
        self.pseudonyms = await self._store.pseudonyms()
        self.skeletons = {}
        for user_id, pseudonym in sorted(self.pseudonyms.items()):
            self.skeletons.setdefault(pseudonym_skeleton(pseudonym), user_id)

    def pseudonym_of(self, user_id: str) -> Optional[str]:
        """The current pseudonym of a local user, or None if unknown."""
        return self.pseudonyms.get(user_id)

    async def register(self, pseudonym: str, password: str, device_name: Optional[str],
                       invite_code: Optional[str] = None) -> Tuple[Session, str]:
        """Create an account and its first device; returns the session and its new token.

        With ``invite_code``, the invites feature (``invite_redeemer``) redeems the code and
        creates the account; without that feature a code is refused."""
        if invite_code is not None:
            if self.invite_redeemer is None:
                raise InviteCodeInvalid("this server does not take invite codes", "invite_code")
            return await self.invite_redeemer(pseudonym, password, device_name, invite_code)
        return await self.create_account(pseudonym, password, device_name)

    def precheck(self, pseudonym: str, password: str, personal: tuple = ()) -> str:
        """Normalise and screen the pseudonym and check the password; the pseudonym to use."""
        pseudonym, key = normalise_pseudonym(pseudonym)
        self.screen.check(pseudonym, personal)
        self._check_distinct(pseudonym, key)
        _check_password(password)
        return pseudonym

    def _check_distinct(self, pseudonym: str, key: str) -> str:
        """The pseudonym's skeleton; PseudonymTaken if an account has the same one. The error
        never names the account it resembles (that would be a pseudonym-existence oracle with
        a hint); it says whether the name is taken or only too similar to one in use."""
        skeleton = pseudonym_skeleton(pseudonym)
        holder = self.skeletons.get(skeleton)
        if holder is not None:
            if (self.pseudonyms.get(holder) or "").casefold() == key:
                raise PseudonymTaken("that pseudonym is in use", "pseudonym")
            raise PseudonymTaken("that pseudonym is too similar to one already in use (look-alike letters, "
                                 "digits or separators); choose a more distinct one", "pseudonym")
        return skeleton

    async def create_account(self, pseudonym: str, password: str, device_name: Optional[str],
                             personal: tuple = ()) -> Tuple[Session, str]:
        """Screen, hash and create the account with its first device."""
        pseudonym, key = normalise_pseudonym(pseudonym)
        self.screen.check(pseudonym, personal)
        self._check_distinct(pseudonym, key)
        _check_password(password)
        loop = asyncio.get_running_loop()
        password_hash = await loop.run_in_executor(None, self._hasher.hash, password)
        user_id = str(UserID.parse(f"@u{_random_chars(_BASE32, 12)}:{self._server_name}"))
        # Checked again after the hash (another sign-up may have taken a look-alike meanwhile);
        # the unique index on the skeleton settles a race between two servers' processes.
        skeleton = self._check_distinct(pseudonym, key)
        await self._store.create_account(user_id, pseudonym, key, password_hash, self._now_ms(), skeleton)
        self.pseudonyms[user_id] = pseudonym
        self.skeletons[skeleton] = user_id
        return await self._new_device(user_id, pseudonym, device_name)

    async def login(self, pseudonym: str, password: str, device_name: Optional[str]) -> Tuple[Session, str]:
        """Check the password and open a new device; BadCredentials if either part is wrong."""
        row = await self.check_password(pseudonym, password)
        for gate in self.gates:
            gate(row.user_id)
        return await self._new_device(row.user_id, row.pseudonym, device_name)

    async def check_password(self, pseudonym: str, password: str) -> Any:
        """The account row if the password is right (no device, no gates: e.g. a suspended
        member appealing); BadCredentials otherwise, in the same time either way."""
        try:
            _, key = normalise_pseudonym(pseudonym)
        except InvalidPseudonym:
            key = None
        row = await self._store.get_by_pseudonym_key(key) if key else None
        loop = asyncio.get_running_loop()
        stored = row.password_hash if row is not None else await self.prepare_dummy_hash()
        ok = await loop.run_in_executor(None, self._verify, stored, password)
        if row is None or not ok:
            raise BadCredentials("unknown pseudonym or wrong password")
        return row

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
