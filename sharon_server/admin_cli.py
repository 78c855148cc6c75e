"""``sharon-server admin``: grant, revoke and list server administrators from the shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Optional, Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sharon-server admin", description="Manage server administrators.")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./sharon-data)")
    p.add_argument("--database-url", metavar="URL", help="database URL (default SQLite in the data directory)")
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    sub = p.add_subparsers(dest="action", required=True)
    for name, help_text in (("grant", "make an account a server admin"), ("revoke", "remove an admin")):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("pseudonym")
    sub.add_parser("list", help="list server admins")
    return p


async def _run(args: argparse.Namespace) -> int:
    from sharon_server.accounts import normalise_pseudonym
    from sharon_server.config import load_config
    from sharon_server.features.spaces import grant_admin, list_admins, revoke_admin
    from sharon_server.storage.database import open_database

    flags = [f for f in (("--data-dir", args.data_dir), ("--database-url", args.database_url),
                         ("--config", args.config)) if f[1]]
    config = load_config([x for pair in flags for x in pair])
    db = await open_database(config.effective_database_url)
    try:
        if args.action == "list":
            for row in await list_admins(db):
                pseudonyms = await db.accounts.pseudonyms([row["user_id"]])
                print(f"{pseudonyms.get(row['user_id'], '?')}\t{row['user_id']}\tgranted by {row['granted_by']}")
            return 0
        _, key = normalise_pseudonym(args.pseudonym)
        account = await db.accounts.get_by_pseudonym_key(key)
        if account is None:
            print(f"sharon-server admin: no account with pseudonym {args.pseudonym!r}", file=sys.stderr)
            return 1
        from sharon_server.audit import open_audit

        audit = await open_audit(db, lambda: int(time.time() * 1000))
        if args.action == "grant":
            changed = await grant_admin(db, account.user_id, "shell", int(time.time() * 1000))
            if changed:
                await audit.append("shell", "admin.grant", member=account.user_id)
            print(f"{args.pseudonym} ({account.user_id}) {'is now' if changed else 'was already'} a server admin")
        else:
            changed = await revoke_admin(db, account.user_id)
            if changed:
                await audit.append("shell", "admin.revoke", member=account.user_id)
            print(f"{args.pseudonym} ({account.user_id}) {'is no longer' if changed else 'was not'} a server admin")
        return 0
    finally:
        await db.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one admin action; returns the exit code."""
    from protocol.errors import SharonError

    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except SharonError as exc:
        print(f"sharon-server admin: {exc.code}: {exc.reason}", file=sys.stderr)
        return 1
