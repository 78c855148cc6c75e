"""The identity vault (sharon_server/vault.py, cli_vault.py): encryption at rest, keys, rotation.

Storage tests run on SQLite and PostgreSQL (the ``backend`` fixture); the shell commands run
as subprocesses against a SQLite data directory.
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import sqlalchemy as sa

from protocol.identity import Identity, identity_values, nhs_check_digit
from sharon_server.config import Config
from sharon_server.storage.database import Database, open_database
from sharon_server.storage.schema_vault import identity_vault
from sharon_server.vault import (
    ENV_VAR, IdentityVault, KeyFile, VaultKeyError, VaultKeyring, key_file_path, key_source,
    load_or_create_key_file, open_vault, read_key_file, write_key_file,
)

try:  # pytest puts tests/ on sys.path while tests/ is not a package
    from storage_backends import Backend, backend, run  # noqa: F401 - fixtures
except ImportError:  # tests/ became a package
    from tests.storage_backends import Backend, backend, run  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
ALICE = "@ualiceaaaaaaaa:example.org"
BOB = "@ubobbbbbbbbbb:example.org"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_795_000_000_000

    def __call__(self) -> int:
        self.ms += 1
        return self.ms


def person(i: int) -> Identity:
    """A distinctive identity per ``i`` (values unlikely to appear anywhere by chance)."""
    prefix = f"{(i * 7919 + 123456789) % 10**9:09d}"
    while nhs_check_digit(prefix) is None:
        prefix = f"{(int(prefix) + 1) % 10**9:09d}"
    return Identity.parse({
        "name": f"Zephyrine Quartermaine-{i:03d}",
        "date_of_birth": f"19{50 + i % 50:02d}-0{1 + i % 9}-1{i % 10}",
        "nhs_number": prefix + str(nhs_check_digit(prefix)),
        "contact": {"phone": f"+44 7700 9{i:05d}", "email": f"zephyrine.q{i}@example.org",
                    "address": f"{i} Marigold Crescent\nHuddersfield HD{i % 9 + 1}"},
        "care_team": f"Calderbrook Early Intervention {i}",
        "emergency_contact": {"name": f"Ptolemy Quartermaine {i}", "phone": f"0113 496 {i:04d}",
                              "relationship": "grandfather"},
    })


def uid(i: int) -> str:
    return f"@u{i:012d}:example.org"


def all_needles(identities: List[Identity]) -> List[bytes]:
    """Every identity value, as UTF-8 and as the hex PostgreSQL uses to print bytea."""
    out = []
    for ident in identities:
        for value in identity_values(ident):
            raw = value.encode("utf-8")
            out += [raw, raw.hex().encode("ascii")]
    return out


async def _open(b: Backend, keys: Any, clock: Any = None) -> Tuple[Database, IdentityVault]:
    db = await b.open()
    return db, IdentityVault(db, keys, clock or Clock())


# --- storage, both backends -------------------------------------------------------------


def test_put_get_has_delete(backend: Backend) -> None:
    ring = VaultKeyring.generate()
    clock = Clock()

    async def go() -> None:
        db, vault = await _open(backend, ring, clock)
        assert await vault.get(ALICE) is None and not await vault.has(ALICE)
        await vault.put(ALICE, person(1))
        await vault.put(BOB, person(2))
        assert await vault.get(ALICE) == person(1) and await vault.get(BOB) == person(2)
        assert await vault.has(ALICE)
        async with db.read_engine.connect() as conn:
            first = (await conn.execute(sa.select(identity_vault).where(identity_vault.c.user_id == ALICE))).one()
        await vault.put(ALICE, person(3))  # replace: new nonce, created_ts kept
        assert await vault.get(ALICE) == person(3)
        async with db.read_engine.connect() as conn:
            second = (await conn.execute(sa.select(identity_vault).where(identity_vault.c.user_id == ALICE))).one()
        assert second.created_ts == first.created_ts < second.updated_ts
        assert second.nonce != first.nonce and len(second.nonce) == 12 and second.key_version == 1
        assert len(first.ciphertext) % 256 == 16  # padded plaintext + GCM tag
        assert await vault.delete(ALICE) and not await vault.delete(ALICE)
        assert await vault.get(ALICE) is None and await vault.get(BOB) == person(2)
        assert await vault.status() == {1: 1}

    backend.run(go())


def test_a_dump_without_the_key_reveals_nothing(backend: Backend) -> None:
    people = [person(i) for i in range(12)]

    async def go() -> Tuple[Database, List[bytes]]:
        db, vault = await _open(backend, VaultKeyring.generate())
        for i, ident in enumerate(people):
            await vault.put(uid(i), ident)
        await vault.put(uid(0), people[0])  # an update too (old page versions in the WAL)
        dumps: List[bytes] = []
        if backend.name == "postgresql":
            async with db.read_engine.connect() as conn:
                tables = (await conn.execute(sa.text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                    {"s": backend.schema})).scalars().all()
                assert "identity_vault" in tables
                for table in tables:
                    rows = (await conn.execute(sa.text(f'SELECT t::text FROM "{table}" t'))).scalars().all()
                    dumps.append("\n".join(rows).encode("utf-8"))
        return db, dumps

    db, dumps = backend.run(go())
    if backend.name == "sqlite":
        data_dir = Path(backend.url.split("///", 1)[1]).parent
        files = sorted(data_dir.iterdir())
        assert any(f.name.endswith("-wal") for f in files)  # still open: the WAL counts too
        dumps = [f.read_bytes() for f in files]
        backend.run(db.close())  # checkpointed into the main file
        dumps += [f.read_bytes() for f in sorted(data_dir.iterdir())]
        assert sum(d.count(b"identity_vault") for d in dumps) >= 2
    blob = b"\n".join(dumps)
    for needle in all_needles(people):
        assert needle not in blob, "an identity value is readable in the dump"


def test_wrong_key_fails_clearly(backend: Backend) -> None:
    async def go() -> None:
        db, vault = await _open(backend, VaultKeyring.generate())
        await vault.put(ALICE, person(1))
        other = IdentityVault(db, VaultKeyring.generate())  # also "v1", different bytes
        with pytest.raises(VaultKeyError, match="cannot decrypt the identity of .* with vault key v1"):
            await other.get(ALICE)
        with pytest.raises(VaultKeyError):
            await other.verify_keys()
        result = await other.check()
        assert result.total == 1 and result.failed == [ALICE]
        missing = IdentityVault(db, VaultKeyring.generate(version=5))
        with pytest.raises(VaultKeyError, match="no key v1"):
            await missing.get(ALICE)
        await vault.verify_keys()  # the right key is fine

    backend.run(go())


def test_moved_or_tampered_ciphertext_fails(backend: Backend) -> None:
    t = identity_vault.c

    async def go() -> None:
        db, vault = await _open(backend, VaultKeyring.generate())
        await vault.put(ALICE, person(1))
        await vault.put(BOB, person(2))
        async with db.engine.begin() as conn:
            a = (await conn.execute(sa.select(identity_vault).where(t.user_id == ALICE))).one()
            await conn.execute(sa.update(identity_vault).where(t.user_id == BOB)
                               .values(nonce=a.nonce, ciphertext=a.ciphertext))
        with pytest.raises(VaultKeyError, match="altered or moved"):
            await vault.get(BOB)
        assert await vault.get(ALICE) == person(1)
        for column, value in (("ciphertext", bytes([a.ciphertext[0] ^ 1]) + a.ciphertext[1:]),
                              ("ciphertext", a.ciphertext[:-1]),
                              ("nonce", bytes(12))):
            async with db.engine.begin() as conn:
                await conn.execute(sa.update(identity_vault).where(t.user_id == ALICE).values({column: value}))
            with pytest.raises(VaultKeyError):
                await vault.get(ALICE)
            async with db.engine.begin() as conn:
                await conn.execute(sa.update(identity_vault).where(t.user_id == ALICE)
                                   .values(nonce=a.nonce, ciphertext=a.ciphertext))
            assert await vault.get(ALICE) == person(1)
        assert (await vault.check()).failed == [BOB]

    backend.run(go())


class Interrupt(Exception):
    pass


def test_rotation_before_during_after(backend: Backend) -> None:
    old = VaultKeyring.generate()
    both = old.add()
    new_only = both.only_current()
    n = 25

    async def go() -> None:
        db, vault = await _open(backend, old)
        for i in range(n):
            await vault.put(uid(i), person(i))
        assert await vault.status() == {1: n}
        rotating = IdentityVault(db, both)

        def stop_after_first_batch(done: int, remaining: int) -> None:
            raise Interrupt  # a crash between batches

        with pytest.raises(Interrupt):
            await rotating.reencrypt(batch_size=10, progress=stop_after_first_batch)
        assert await rotating.status() == {1: n - 10, 2: 10}  # half-rotated
        for i in range(n):  # the (old + new) keyring reads everything
            assert await rotating.get(uid(i)) == person(i)
        assert (await vault.check()).failed == [uid(i) for i in range(10)]  # old key alone cannot
        await rotating.put(uid(99), person(99))  # writes go to the new key meanwhile
        assert await rotating.reencrypt(batch_size=7) == n - 10  # resume
        assert await rotating.reencrypt(batch_size=7) == 0  # idempotent
        assert await rotating.status() == {2: n + 1}
        after = IdentityVault(db, new_only)
        await after.verify_keys()
        for i in range(n):
            assert await after.get(uid(i)) == person(i)
        result = await vault.check()
        assert result.total == n + 1 and len(result.failed) == n + 1
        with pytest.raises(VaultKeyError, match="no key v2"):
            await vault.get(uid(0))
        with pytest.raises(VaultKeyError):
            await vault.verify_keys()

    backend.run(go())


def test_rotate_in_memory_keyring(backend: Backend) -> None:
    async def go() -> None:
        db, vault = await _open(backend, VaultKeyring.generate())
        for i in range(5):
            await vault.put(uid(i), person(i))
        before = vault.keyring
        new_key = os.urandom(32)
        final = await vault.rotate(new_key, batch_size=2)
        assert final.versions == (2,) and final.current_key == new_key and vault.keyring == final
        assert await vault.status() == {2: 5}
        assert await vault.get(uid(3)) == person(3)
        with pytest.raises(VaultKeyError):
            await IdentityVault(db, before).get(uid(3))

    backend.run(go())


# --- keys ------------------------------------------------------------------------------


def test_keyring_format() -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    text = f"# vault keys\nv1 {base64.urlsafe_b64encode(k1).decode()}\n\nv2 {base64.urlsafe_b64encode(k2).decode().rstrip('=')}\n"
    ring = VaultKeyring.parse(text)
    assert ring.versions == (1, 2) and ring.current_version == 2 and ring.key(1) == k1 and ring.current_key == k2
    assert VaultKeyring.parse(ring.encode()) == ring == VaultKeyring.parse(ring.encode(","))
    assert base64.urlsafe_b64encode(k1).decode() not in repr(ring)
    for bad in ("", "v1", "1 " + base64.urlsafe_b64encode(k1).decode(), "v1 " + base64.urlsafe_b64encode(k1[:16]).decode(),
                "v1 !!!", f"v1 {base64.urlsafe_b64encode(k1).decode()}\nv1 {base64.urlsafe_b64encode(k2).decode()}"):
        with pytest.raises(VaultKeyError):
            VaultKeyring.parse(bad, "test")
    assert ring.add().versions == (1, 2, 3)


def test_key_file_created_0600_and_mode_fixed(tmp_path: Path) -> None:
    path = key_file_path(tmp_path / "data")
    ring = load_or_create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ring.versions == (1,) and load_or_create_key_file(path) == ring
    os.chmod(path, 0o644)
    warnings: List[str] = []
    assert read_key_file(path, warnings.append) == ring
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(warnings) == 1 and "0644" in warnings[0] and ring.encode().split()[1] not in warnings[0]
    write_key_file(path, ring.add())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and read_key_file(path).versions == (1, 2)
    assert not path.with_name(path.name + ".new").exists()


def test_key_source_env_wins_and_missing_file_is_an_error(tmp_path: Path) -> None:
    ring = VaultKeyring.generate().add()
    source = key_source(tmp_path, {ENV_VAR: ring.encode(",")}, create=True)
    assert source.keyring() == ring and not key_file_path(tmp_path).exists()
    with pytest.raises(VaultKeyError, match="no vault key file"):
        key_source(tmp_path, {}, create=False)
    with pytest.raises(VaultKeyError, match=ENV_VAR):
        key_source(tmp_path, {ENV_VAR: "v1 nope"}, create=True)
    assert isinstance(key_source(tmp_path, {}, create=True), KeyFile)


def test_running_vault_follows_the_key_file(tmp_path: Path) -> None:
    async def go() -> None:
        db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'sharon.db'}")
        try:
            vault = await open_vault(Config(data_dir=tmp_path), db, environ={})
            await vault.put(ALICE, person(1))
            path = key_file_path(tmp_path)
            write_key_file(path, read_key_file(path).add())  # a shell rotation begins
            await vault.put(BOB, person(2))
            assert await vault.status() == {1: 1, 2: 1}
            assert await vault.get(ALICE) == person(1)
            # A server started with the wrong key refuses to start.
            write_key_file(path, VaultKeyring.generate())
            with pytest.raises(VaultKeyError, match="do not open the stored identities"):
                await open_vault(Config(data_dir=tmp_path), db, environ={})
        finally:
            await db.close()

    asyncio.run(go())


# --- the shell commands ----------------------------------------------------------------


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARON_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sharon_server", "vault", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, env=_env(**env), cwd=str(ROOT), timeout=120)


def _seed(data_dir: Path, n: int, environ: Dict[str, str]) -> None:
    async def go() -> None:
        db = await open_database(Config(data_dir=data_dir).effective_database_url)
        try:
            vault = await open_vault(Config(data_dir=data_dir), db, environ=environ)
            for i in range(n):
                await vault.put(uid(i), person(i))
        finally:
            await db.close()

    asyncio.run(go())


def _assert_no_identity(text: str, n: int) -> None:
    for i in range(n):
        for value in identity_values(person(i)):
            assert value not in text


def test_cli_rotate_status_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    n = 30
    _seed(data, n, {})
    path = key_file_path(data)
    old = read_key_file(path)

    status = _cli(data, "status")
    assert status.returncode == 0, status.stderr
    assert "v1\t30 rows" in status.stdout and "current: v1" in status.stdout

    rotated = _cli(data, "rotate", "--batch-size", "8")
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 8 rows" in rotated.stderr and "old keys removed" in rotated.stderr
    ring = read_key_file(path)
    assert ring.versions == (2,) and ring.current_key != old.current_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status = _cli(data, "status")
    assert "v2\t30 rows" in status.stdout and "0 not under the current key" in status.stdout
    check = _cli(data, "check")
    assert check.returncode == 0 and "checked 30 rows; 0 failed" in check.stdout
    for proc in (status, rotated, check):
        _assert_no_identity(proc.stdout + proc.stderr, n)
        assert ring.encode().split()[1] not in proc.stdout + proc.stderr  # the key is never printed

    write_key_file(path, old)  # the old key alone no longer opens anything
    check = _cli(data, "check", "--list")
    assert check.returncode == 1 and "checked 30 rows; 30 failed" in check.stdout and uid(0) in check.stdout
    _assert_no_identity(check.stdout + check.stderr, n)


def test_cli_rotate_resumes_an_interrupted_rotation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _seed(data, 12, {})
    path = key_file_path(data)
    both = read_key_file(path).add()
    write_key_file(path, both)  # as if `rotate` died after adding the key and re-encrypting a few

    async def half() -> None:
        db = await open_database(Config(data_dir=data).effective_database_url)
        try:
            with pytest.raises(Interrupt):
                await IdentityVault(db, both).reencrypt(5, lambda d, r: (_ for _ in ()).throw(Interrupt()))
        finally:
            await db.close()

    asyncio.run(half())
    proc = _cli(data, "rotate")
    assert proc.returncode == 0, proc.stderr
    assert "finishing the rotation to v2" in proc.stderr
    assert read_key_file(path) == both.only_current()
    assert "v2\t12 rows" in _cli(data, "status").stdout


def test_cli_rotate_with_env_keys_prints_the_new_value(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env_old = VaultKeyring.generate().encode(",")
    _seed(data, 6, {ENV_VAR: env_old})
    assert not key_file_path(data).exists()
    proc = _cli(data, "rotate", SHARON_VAULT_KEYS=env_old)
    assert proc.returncode == 0, proc.stderr
    new_value = proc.stdout.strip()
    assert VaultKeyring.parse(new_value).versions == (2,)
    assert not key_file_path(data).exists()
    assert _cli(data, "check", SHARON_VAULT_KEYS=new_value).returncode == 0
    assert _cli(data, "check", SHARON_VAULT_KEYS=env_old).returncode == 1
    _assert_no_identity(proc.stdout + proc.stderr, 6)


def test_cli_without_keys_fails_clearly(tmp_path: Path) -> None:
    proc = _cli(tmp_path / "empty", "status")
    assert proc.returncode == 1 and "no vault key file" in proc.stderr
    assert not key_file_path(tmp_path / "empty").exists()


def test_a_write_under_the_old_key_during_rotation_is_swept_up(backend: Backend) -> None:
    old = VaultKeyring.generate()
    both = old.add()

    async def go() -> None:
        db, stale_server = await _open(backend, old)  # a server that has not seen the new key
        for i in range(9):
            await stale_server.put(uid(i), person(i))
        writes = iter(range(100, 103))
        tasks: List[Any] = []

        def meanwhile(done: int, remaining: int) -> None:
            i = next(writes, None)
            if i is not None:  # rewrite an already re-encrypted row and add one, both under v1
                tasks.append(asyncio.ensure_future(stale_server.put(uid(0), person(i))))
                tasks.append(asyncio.ensure_future(stale_server.put(uid(i), person(i))))

        rotating = IdentityVault(db, both)
        await rotating.reencrypt(batch_size=4, progress=meanwhile)
        await asyncio.gather(*tasks)
        await rotating.reencrypt(batch_size=4)  # what `vault rotate` re-checks before dropping keys
        status = await rotating.status()
        assert set(status) == {2}
        assert await IdentityVault(db, both.only_current()).get(uid(0)) in {person(i) for i in range(100, 103)}
        assert (await rotating.check()).failed == []

    backend.run(go())


def test_cli_fixes_a_readable_key_file_with_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _seed(data, 1, {})
    os.chmod(key_file_path(data), 0o640)
    proc = _cli(data, "status")
    assert proc.returncode == 0 and "had mode 0640; it is now 0600" in proc.stderr
    assert stat.S_IMODE(key_file_path(data).stat().st_mode) == 0o600


def test_a_binary_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = key_file_path(tmp_path)
    path.write_bytes(os.urandom(64) + b"\xff")
    with pytest.raises(VaultKeyError, match="not a vault key file|entry"):
        read_key_file(path)
