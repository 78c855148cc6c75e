"""``sharon-server vault``: rotate the identity-vault key, show its status, check every row.

- ``rotate``: generate a new key, append it to ``DATA_DIR/vault.keys`` (atomic, 0600),
  re-encrypt every row under it (progress on stderr), then rewrite the file with only the
  new key. If the keyring already holds several keys (an earlier rotation was interrupted)
  it finishes that rotation instead of starting another. With ``SHARON_VAULT_KEYS`` set no
  file is written: the new value is printed on stdout (before re-encrypting, so it is never
  lost); put it in your secret store and restart the server with it.
- ``status``: rows per key version and the current version.
- ``check``: decrypt every row; report how many fail (user IDs only with ``--list``).

Identity data is never printed. Exit codes: 0 ok, 1 failure, 2 usage/configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Optional, Sequence

__all__ = ["main"]

PROG = "sharon-server vault"


def _common(p: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    p.add_argument("--data-dir", metavar="DIR", default=default, help="data directory (default ./sharon-data)")
    p.add_argument("--database-url", metavar="URL", default=default,
                   help="database URL (default SQLite in the data directory)")
    p.add_argument("--config", metavar="FILE", default=default, help="TOML config file")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Manage the identity vault and its keys.")
    _common(p, suppress=False)
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("rotate", help="re-encrypt every identity under a new key, then drop the old keys")
    _common(r, suppress=True)
    r.add_argument("--batch-size", type=int, default=200, help="rows per transaction (default 200)")
    s = sub.add_parser("status", help="rows per key version")
    _common(s, suppress=True)
    c = sub.add_parser("check", help="decrypt every row and report failures (no identity data is printed)")
    _common(c, suppress=True)
    c.add_argument("--list", action="store_true", help="also list the user IDs that fail")
    return p


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


async def _run(args: argparse.Namespace) -> int:
    from sharon_server.config import load_config
    from sharon_server.storage.database import open_database
    from sharon_server.vault import ENV_VAR, IdentityVault, KeyFile, key_source, write_key_file

    flags = [f for f in (("--data-dir", args.data_dir), ("--database-url", args.database_url),
                         ("--config", args.config)) if f[1]]
    config = load_config([x for pair in flags for x in pair])
    source = key_source(config.data_dir, create=False, on_warning=_err)
    db = await open_database(config.effective_database_url)
    try:
        vault = IdentityVault(db, source)
        if args.action == "status":
            ring = vault.keyring
            counts = await vault.status()
            where = "environment " + ENV_VAR if not isinstance(source, KeyFile) else str(source.path)
            print(f"keys: {where}")
            print(f"key versions held: {', '.join(f'v{v}' for v in ring.versions)}; current: v{ring.current_version}")
            for version, n in sorted(counts.items()):
                print(f"v{version}\t{n} rows")
            stale = sum(n for v, n in counts.items() if v != ring.current_version)
            print(f"total {sum(counts.values())} rows; {stale} not under the current key")
            return 0
        if args.action == "check":
            result = await vault.check()
            print(f"checked {result.total} rows; {len(result.failed)} failed to decrypt")
            if args.list:
                for user_id in result.failed:
                    print(user_id)
            return 1 if result.failed else 0
        return await _rotate(vault, source, args.batch_size, write_key_file)
    finally:
        await db.close()


async def _rotate(vault: Any, source: Any, batch_size: int, write_key_file: Any) -> int:
    from sharon_server.vault import ENV_VAR, KeyFile, StaticKeys

    ring = vault.keyring
    resuming = len(ring.versions) > 1
    if resuming:
        _err(f"the keyring holds {len(ring.versions)} keys: finishing the rotation to v{ring.current_version}")
    else:
        ring = ring.add()
    if isinstance(source, KeyFile):
        if not resuming:
            write_key_file(source.path, ring)  # old + new: every row stays readable meanwhile
            _err(f"added key v{ring.current_version} to {source.path}")
    else:
        vault = vault.with_keys(StaticKeys(ring))
        print(ring.only_current().encode(","), flush=True)
        _err(f"the new {ENV_VAR} value is on stdout. If this run is interrupted, run it again with "
             f"{ENV_VAR} set to the old value plus ',' plus the new one.")

    def progress(done: int, remaining: int) -> None:
        _err(f"re-encrypted {done} rows, {remaining} to go")

    done = await vault.reencrypt(batch_size, progress)
    result = await vault.check(batch_size)
    stale = sum(n for v, n in result.by_version.items() if v != ring.current_version)
    if result.failed or stale:
        _err(f"NOT dropping the old keys: {len(result.failed)} rows fail to decrypt, {stale} not re-encrypted")
        return 1
    if isinstance(source, KeyFile):
        write_key_file(source.path, ring.only_current())
        _err(f"rotated {done} rows to key v{ring.current_version}; old keys removed from {source.path}. "
             "Back up the new key file now (separately from database backups).")
    else:
        _err(f"rotated {done} rows to key v{ring.current_version}; set {ENV_VAR} to the value printed "
             "above and restart the server.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one vault action; returns the exit code."""
    from protocol.errors import SharonError
    from sharon_server.config import ConfigError
    from sharon_server.vault import VaultError

    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ConfigError as exc:
        _err(f"configuration error: {exc}")
        return 2
    except VaultError as exc:
        _err(str(exc))
        return 1
    except SharonError as exc:
        _err(f"{exc.code}: {exc.reason}")
        return 1
    except OSError as exc:
        _err(f"{exc.strerror or exc}: {exc.filename or ''}")
        return 1

