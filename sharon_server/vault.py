"""The identity vault: members' real identities, encrypted at rest with keys kept outside the DB.

Each member's ``protocol.identity.Identity`` is stored as one row of ``identity_vault``:
``(user_id, key_version, nonce, ciphertext, created_ts, updated_ts)``. The ciphertext is
AES-256-GCM over the record's JSON, length-prefixed and zero-padded to a multiple of
``PAD_BYTES`` (so its size says little about the record), with a fresh random 96-bit nonce
per write and associated data ``b"sharon-vault-v1|" + user_id``: a ciphertext copied into
another member's row does not decrypt. Nothing else about an identity is stored: no
searchable column, no digest of the NHS number (see docs/vault.md for why).

Keys (the *keyring*) come from ``SHARON_VAULT_KEYS`` if set, else from the key file
``DATA_DIR/vault.keys`` (created with a fresh key, mode 0600, on first start). One key per
line, ``v<N> <urlsafe base64 of 32 bytes>``; the LAST line is the current key (used for every
write); earlier lines only decrypt rows not yet re-encrypted by a rotation. In the env
variable, lines may also be separated by ``,`` or ``;``.

Decrypted identities are never cached: every ``get`` reads and decrypts the row.
A key that cannot decrypt a row raises ``VaultKeyError`` (never garbage, never a crash).
The key file is re-read when it changes on disk, so a running server follows a rotation
done from the shell (``sharon-server vault rotate``, sharon_server/cli_vault.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import attr
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.errors import SharonError
from protocol.identity import Identity
from sharon_server.storage._sql import insert_for
from sharon_server.storage.schema_vault import identity_vault

__all__ = [
    "VaultError",
    "VaultKeyError",
    "VaultKeyring",
    "KeyFile",
    "StaticKeys",
    "IdentityVault",
    "VaultCheck",
    "ENV_VAR",
    "KEY_FILE_NAME",
    "KEY_BYTES",
    "PAD_BYTES",
    "key_file_path",
    "read_key_file",
    "write_key_file",
    "load_or_create_key_file",
    "key_source",
    "open_vault",
]

ENV_VAR = "SHARON_VAULT_KEYS"
KEY_FILE_NAME = "vault.keys"
KEY_BYTES = 32
NONCE_BYTES = 12
PAD_BYTES = 256
AAD_PREFIX = b"sharon-vault-v1|"
DEFAULT_BATCH = 200

_LINE = re.compile(r"v([1-9][0-9]{0,8})\s+([A-Za-z0-9_\-]+=*)")

Warn = Callable[[str], None]


class VaultError(Exception):
    """Something is wrong with the vault (its rows, its records)."""


class VaultKeyError(VaultError):
    """A key is missing, malformed or wrong: a row cannot be decrypted with the keyring."""


# --- keyring ---------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, repr=False)
class VaultKeyring:
    """Versioned 32-byte keys, in order; the last one is current (encrypts every write)."""

    keys: Tuple[Tuple[int, bytes], ...] = attr.ib()

    @keys.validator
    def _check(self, _a: Any, value: Tuple[Tuple[int, bytes], ...]) -> None:
        if not value:
            raise VaultKeyError("the vault keyring is empty")
        seen = set()
        for version, key in value:
            if version in seen:
                raise VaultKeyError(f"vault key v{version} appears twice")
            seen.add(version)
            if len(key) != KEY_BYTES:
                raise VaultKeyError(f"vault key v{version} is not {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"VaultKeyring(versions={list(self.versions)}, current=v{self.current_version})"

    @classmethod
    def generate(cls, version: int = 1) -> "VaultKeyring":
        """A keyring of one fresh random key."""
        return cls(((version, os.urandom(KEY_BYTES)),))

    @classmethod
    def parse(cls, text: str, source: str = "vault keys") -> "VaultKeyring":
        """Parse ``v<N> <base64>`` lines (blank lines and ``#`` comments ignored)."""
        keys: List[Tuple[int, bytes]] = []
        for n, raw in enumerate(re.split(r"[\n;,]", text), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = _LINE.fullmatch(line)
            if m is None:
                raise VaultKeyError(f"{source}: entry {n} is not 'v<N> <urlsafe base64 key>'")
            try:
                key = base64.urlsafe_b64decode(m.group(2) + "=" * (-len(m.group(2)) % 4))
            except (binascii.Error, ValueError):
                raise VaultKeyError(f"{source}: key v{m.group(1)} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise VaultKeyError(f"{source}: key v{m.group(1)} is {len(key)} bytes, not {KEY_BYTES}")
            keys.append((int(m.group(1)), key))
        if not keys:
            raise VaultKeyError(f"{source}: no keys")
        try:
            return cls(tuple(keys))
        except VaultKeyError as exc:
            raise VaultKeyError(f"{source}: {exc}") from None

    def encode(self, sep: str = "\n") -> str:
        """The keyring in the key-file format (``sep=","`` for the environment variable)."""
        lines = [f"v{v} {base64.urlsafe_b64encode(k).decode('ascii')}" for v, k in self.keys]
        return sep.join(lines) + ("\n" if sep == "\n" else "")

    @property
    def versions(self) -> Tuple[int, ...]:
        return tuple(v for v, _ in self.keys)

    @property
    def current_version(self) -> int:
        return self.keys[-1][0]

    @property
    def current_key(self) -> bytes:
        return self.keys[-1][1]

    def key(self, version: int) -> bytes:
        """The key of ``version``; VaultKeyError if the keyring does not hold it."""
        for v, k in self.keys:
            if v == version:
                return k
        raise VaultKeyError(f"the vault keyring has no key v{version} (it holds {self._names()})")

    def add(self, key: Optional[bytes] = None) -> "VaultKeyring":
        """This keyring plus a new current key (random unless given), version max+1."""
        new = os.urandom(KEY_BYTES) if key is None else key
        return VaultKeyring(self.keys + ((max(self.versions) + 1, new),))

    def only_current(self) -> "VaultKeyring":
        """Just the current key (what remains once a rotation has finished)."""
        return VaultKeyring((self.keys[-1],))

    def _names(self) -> str:
        return ", ".join(f"v{v}" for v in self.versions)


class StaticKeys:
    """A keyring fixed at start (from the environment, or given by a test)."""

    def __init__(self, keyring: VaultKeyring) -> None:
        self._keyring = keyring

    def keyring(self) -> VaultKeyring:
        return self._keyring

    def describe(self) -> str:
        return "the keyring in memory"


class KeyFile:
    """The key file, re-read whenever it changes on disk (so a shell rotation is followed)."""

    def __init__(self, path: Path, on_warning: Optional[Warn] = None) -> None:
        self.path = path
        self._warn = on_warning
        self._stamp: Optional[Tuple[int, int, int]] = None
        self._keyring: Optional[VaultKeyring] = None

    def keyring(self) -> VaultKeyring:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise VaultKeyError(f"the vault key file {self.path} is missing") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._keyring is None or stamp != self._stamp:
            self._keyring = read_key_file(self.path, self._warn)
            self._stamp = stamp
        return self._keyring

    def describe(self) -> str:
        return f"the key file {self.path}"


KeySource = Union[StaticKeys, KeyFile]


def key_file_path(data_dir: Path) -> Path:
    """Where the key file lives: ``DATA_DIR/vault.keys``."""
    return Path(data_dir) / KEY_FILE_NAME


def read_key_file(path: Path, on_warning: Optional[Warn] = None) -> VaultKeyring:
    """Read the key file; a group/world-accessible mode is fixed to 0600 with a warning."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)
        (on_warning or _log_warning)(
            f"the vault key file {path} had mode {mode:04o}; it is now 0600 (readable by its owner only)")
    try:
        text = path.read_text("ascii")
    except UnicodeDecodeError:
        raise VaultKeyError(f"{path}: not a vault key file (non-ASCII bytes)") from None
    return VaultKeyring.parse(text, str(path))


def write_key_file(path: Path, keyring: VaultKeyring) -> None:
    """Replace the key file atomically (write a 0600 temporary file, fsync, rename, fsync dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older .new left with another mode
        os.write(fd, keyring.encode().encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_or_create_key_file(path: Path, on_warning: Optional[Warn] = None) -> VaultKeyring:
    """Read the key file, creating it with one fresh key (v1) if it does not exist."""
    if not path.exists():
        write_key_file(path, VaultKeyring.generate())
    return read_key_file(path, on_warning)


def key_source(data_dir: Path, environ: Optional[Mapping[str, str]] = None, *, create: bool,
               on_warning: Optional[Warn] = None) -> KeySource:
    """The keys: ``SHARON_VAULT_KEYS`` if set, else the key file (created if ``create``)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR, "").strip():
        return StaticKeys(VaultKeyring.parse(env[ENV_VAR], ENV_VAR))
    path = key_file_path(data_dir)
    if create:
        load_or_create_key_file(path, on_warning)
    elif not path.exists():
        raise VaultKeyError(f"no vault key file at {path} and {ENV_VAR} is not set")
    source = KeyFile(path, on_warning)
    source.keyring()  # fail now on a malformed file
    return source


def _log_warning(message: str) -> None:
    from twisted.logger import Logger

    Logger(namespace="sharon.vault").warn("vault.warning: {message}", message=message)


# --- sealing -----------------------------------------------------------------------------


def _aad(user_id: str) -> bytes:
    return AAD_PREFIX + user_id.encode("utf-8")


def _frame(identity: Identity) -> bytes:
    body = json.dumps(identity.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    framed = struct.pack(">I", len(body)) + body
    return framed + b"\0" * (-len(framed) % PAD_BYTES)


def _unframe(plain: bytes, user_id: str) -> Identity:
    try:
        (length,) = struct.unpack(">I", plain[:4])
        obj = json.loads(plain[4:4 + length].decode("utf-8"))
        return Identity.parse(obj)
    except (struct.error, ValueError, SharonError) as exc:
        # Authenticated but unreadable: written by a different format, not by an attacker.
        raise VaultError(f"the identity record of {user_id} decrypts but does not parse: {type(exc).__name__}") from None


def _seal(key: bytes, user_id: str, plain: bytes) -> Tuple[bytes, bytes]:
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plain, _aad(user_id))


def _open(keyring: VaultKeyring, user_id: str, version: int, nonce: bytes, ciphertext: bytes) -> bytes:
    key = keyring.key(version)
    try:
        return AESGCM(key).decrypt(bytes(nonce), bytes(ciphertext), _aad(user_id))
    except InvalidTag:
        raise VaultKeyError(
            f"cannot decrypt the identity of {user_id} with vault key v{version}: "
            "the key is wrong or the row was altered or moved") from None


# --- the vault ---------------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class VaultCheck:
    """The result of decrypting every row: how many, and which user IDs failed."""

    total: int
    failed: List[str]
    by_version: Dict[int, int]


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class IdentityVault:
    """Encrypted identity records, one per user ID (see the module docstring).

    ``keys`` is a ``VaultKeyring`` or a key source (``KeyFile``/``StaticKeys``);
    ``now_ms`` is the clock used for ``created_ts``/``updated_ts``.
    """

    def __init__(self, db: Any, keys: Union[VaultKeyring, KeySource],
                 now_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self._db = db
        self._keys: KeySource = StaticKeys(keys) if isinstance(keys, VaultKeyring) else keys
        self._now_ms = now_ms

    @property
    def keyring(self) -> VaultKeyring:
        """The keyring in use now (the key file's current content)."""
        return self._keys.keyring()

    def with_keys(self, keys: Union[VaultKeyring, KeySource]) -> "IdentityVault":
        """The same vault (database, clock) with other keys."""
        return IdentityVault(self._db, keys, self._now_ms)

    def __repr__(self) -> str:
        return f"<IdentityVault {self._keys.describe()}>"

    async def put(self, user_id: str, identity: Identity) -> None:
        """Store (or replace) ``user_id``'s identity, encrypted under the current key."""
        if not isinstance(identity, Identity):
            raise TypeError("put needs a parsed protocol.identity.Identity")
        ring = self.keyring
        nonce, ciphertext = _seal(ring.current_key, user_id, _frame(identity))
        now = self._now_ms()
        ins = insert_for(self._db.dialect)(identity_vault).values(
            user_id=user_id, key_version=ring.current_version, nonce=nonce, ciphertext=ciphertext,
            created_ts=now, updated_ts=now,
        )
        stmt = ins.on_conflict_do_update(
            index_elements=[identity_vault.c.user_id],
            set_={"key_version": ins.excluded.key_version, "nonce": ins.excluded.nonce,
                  "ciphertext": ins.excluded.ciphertext, "updated_ts": ins.excluded.updated_ts},
        )
        async with self._db.engine.begin() as conn:
            await conn.execute(stmt)

    async def get(self, user_id: str) -> Optional[Identity]:
        """``user_id``'s identity, or None if the vault has none; VaultKeyError if it will not decrypt."""
        t = identity_vault.c
        async with self._db.read_engine.connect() as conn:
            row = (await conn.execute(
                sa.select(t.key_version, t.nonce, t.ciphertext).where(t.user_id == user_id))).first()
        if row is None:
            return None
        return _unframe(_open(self.keyring, user_id, row.key_version, row.nonce, row.ciphertext), user_id)

    async def has(self, user_id: str) -> bool:
        """Whether the vault holds an identity for ``user_id`` (nothing is decrypted)."""
        t = identity_vault.c
        async with self._db.read_engine.connect() as conn:
            return (await conn.execute(sa.select(t.user_id).where(t.user_id == user_id))).first() is not None

    async def delete(self, user_id: str) -> bool:
        """Remove ``user_id``'s identity; True if there was one."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(sa.delete(identity_vault).where(identity_vault.c.user_id == user_id))
        return bool(result.rowcount)

    async def status(self) -> Dict[int, int]:
        """Rows per key version."""
        t = identity_vault.c
        async with self._db.read_engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(t.key_version, sa.func.count()).group_by(t.key_version).order_by(t.key_version))).all()
        return {int(v): int(n) for v, n in rows}

    async def verify_keys(self) -> None:
        """Decrypt one row per key version in use: VaultKeyError now rather than at the first read."""
        t = identity_vault.c
        ring = self.keyring
        problems = []
        async with self._db.read_engine.connect() as conn:
            versions = (await conn.execute(sa.select(t.key_version).distinct())).scalars().all()
            for version in sorted(versions):
                row = (await conn.execute(
                    sa.select(t.user_id, t.nonce, t.ciphertext).where(t.key_version == version)
                    .order_by(t.user_id).limit(1))).first()
                try:
                    _open(ring, row.user_id, version, row.nonce, row.ciphertext)
                except VaultKeyError as exc:
                    problems.append(str(exc))
        if problems:
            raise VaultKeyError(
                f"the vault keys ({self._keys.describe()}) do not open the stored identities: " + "; ".join(problems))

    async def check(self, batch_size: int = DEFAULT_BATCH) -> VaultCheck:
        """Decrypt (and parse) every row; report the user IDs that fail. Nothing is kept."""
        ring = self.keyring
        total, failed, by_version = 0, [], {}
        async for batch in self._batches(batch_size, stale_only=False):
            for user_id, version, nonce, ciphertext in batch:
                total += 1
                by_version[version] = by_version.get(version, 0) + 1
                try:
                    _unframe(_open(ring, user_id, version, nonce, ciphertext), user_id)
                except VaultError:
                    failed.append(user_id)
        return VaultCheck(total=total, failed=failed, by_version=by_version)

    async def reencrypt(self, batch_size: int = DEFAULT_BATCH,
                        progress: Optional[Callable[[int, int], None]] = None) -> int:
        """Re-encrypt every row not under the current key, in batches; returns how many.

        Idempotent and resumable: each batch commits on its own and rows record their key
        version, so an interrupted run leaves every row readable with the (old + new)
        keyring and a second run carries on. A row rewritten concurrently (by ``put``) is
        left alone. Sweeps again until no stale row remains; raises VaultKeyError (and
        changes nothing more) if a row does not decrypt.
        """
        done = 0
        for _sweep in range(100):
            stale = await self._stale_count()
            if stale == 0:
                return done
            remaining = stale
            async for batch in self._batches(batch_size, stale_only=True):
                ring = self.keyring
                current = ring.current_version
                updates = []
                for user_id, version, nonce, ciphertext in batch:
                    plain = _open(ring, user_id, version, nonce, ciphertext)
                    new_nonce, new_ct = _seal(ring.current_key, user_id, plain)
                    updates.append((user_id, version, bytes(nonce), new_nonce, new_ct))
                t = identity_vault.c
                async with self._db.engine.begin() as conn:
                    for user_id, version, old_nonce, new_nonce, new_ct in updates:
                        result = await conn.execute(
                            sa.update(identity_vault)
                            .where(t.user_id == user_id, t.key_version == version, t.nonce == old_nonce)
                            .values(key_version=current, nonce=new_nonce, ciphertext=new_ct))
                        done += result.rowcount or 0
                remaining = max(0, remaining - len(updates))
                if progress is not None:
                    progress(done, remaining)
        raise VaultError("rows keep appearing under old keys: is a server still running with an old keyring?")

    async def rotate(self, new_key: Optional[bytes] = None, batch_size: int = DEFAULT_BATCH,
                     progress: Optional[Callable[[int, int], None]] = None) -> VaultKeyring:
        """Add ``new_key`` (random if None) as current, re-encrypt every row, drop the old keys.

        For an in-memory keyring (environment / tests); the shell command does the same with
        the key file (sharon_server/cli_vault.py). Returns the final, single-key keyring.
        """
        ring = self.keyring.add(new_key)
        self._keys = StaticKeys(ring)
        await self.reencrypt(batch_size, progress)
        final = ring.only_current()
        self._keys = StaticKeys(final)
        return final

    async def _stale_count(self) -> int:
        t = identity_vault.c
        current = self.keyring.current_version
        async with self._db.read_engine.connect() as conn:
            return int((await conn.execute(
                sa.select(sa.func.count()).select_from(identity_vault).where(t.key_version != current))).scalar_one())

    async def _batches(self, batch_size: int, *, stale_only: bool):  # type: ignore[no-untyped-def]
        t = identity_vault.c
        last = ""
        while True:
            q = sa.select(t.user_id, t.key_version, t.nonce, t.ciphertext).where(t.user_id > last)
            if stale_only:
                q = q.where(t.key_version != self.keyring.current_version)
            async with self._db.read_engine.connect() as conn:
                rows = (await conn.execute(q.order_by(t.user_id).limit(batch_size))).all()
            if not rows:
                return
            yield [(r.user_id, int(r.key_version), r.nonce, r.ciphertext) for r in rows]
            last = rows[-1].user_id


async def open_vault(config: Any, db: Any, *, environ: Optional[Mapping[str, str]] = None,
                     now_ms: Callable[[], int] = _wall_clock_ms,
                     on_warning: Optional[Warn] = None) -> IdentityVault:
    """The server's vault: keys from ``SHARON_VAULT_KEYS`` or ``DATA_DIR/vault.keys`` (created
    on first start), checked against one stored row per key version (VaultKeyError if the
    keys do not open them: better to refuse to start than to fail on the first read)."""
    source = key_source(config.data_dir, environ, create=True, on_warning=on_warning)
    vault = IdentityVault(db, source, now_ms)
    await vault.verify_keys()
    return vault
