"""``sharon-server audit``: verify, export and query the audit log from the shell.

    sharon-server audit verify [--expect-head SEQ:HASH]
    sharon-server audit export [--actor A] [--member M] [--action X] [--since ISO] [--until ISO] [-o FILE]
    sharon-server audit query  [same filters] [--limit N] [--before-seq SEQ]

Every subcommand takes ``--data-dir``, ``--database-url`` and ``--config`` (as the server).
``verify`` exits 0 when the chain is intact (and reaches the expected head, if given), 1
when it is broken, 2 on a usage error; it prints the number of entries checked, the head
(``SEQ:HASH``, to record as the next anchor) and, if broken, the first bad seq and why.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timezone
from typing import Any, Optional, Sequence, TextIO

__all__ = ["main"]

PROGRESS_EVERY = 100_000
"""``verify`` reports progress on stderr each time this many more entries are checked."""


def _iso_ms(text: str) -> int:
    """An ISO 8601 date or date-time (``Z`` allowed; naive means UTC) as epoch milliseconds."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _head(text: str) -> Any:
    from rooms.audit_chain import parse_head

    try:
        return parse_head(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fmt_ts(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parser() -> argparse.ArgumentParser:
    def common_options(default: Any) -> argparse.ArgumentParser:
        # Given before or after the subcommand; SUPPRESS in the subparsers keeps a value
        # given before the subcommand from being reset to None.
        c = argparse.ArgumentParser(add_help=False)
        c.add_argument("--data-dir", metavar="DIR", default=default, help="data directory (default ./sharon-data)")
        c.add_argument("--database-url", metavar="URL", default=default,
                       help="database URL (default SQLite in the data directory)")
        c.add_argument("--config", metavar="FILE", default=default, help="TOML config file")
        return c

    common = common_options(argparse.SUPPRESS)

    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--actor", help="only entries by this actor (user ID, or 'shell')")
    filters.add_argument("--member", help="only entries about this member (user ID)")
    filters.add_argument("--action", help="only entries with this action")
    filters.add_argument("--since", type=_iso_ms, metavar="ISO", help="from this time (inclusive; UTC if no zone)")
    filters.add_argument("--until", type=_iso_ms, metavar="ISO", help="before this time (exclusive)")

    p = argparse.ArgumentParser(prog="sharon-server audit", description="Verify, export and query the audit log.",
                                parents=[common_options(None)])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", parents=[common], help="verify the hash chain (exit 0 ok, 1 broken)")
    v.add_argument("--expect-head", type=_head, metavar="SEQ:HASH",
                   help="an anchor recorded earlier: the log must still reach SEQ with exactly HASH")
    v.add_argument("--quiet", action="store_true", help="no progress on stderr")
    e = sub.add_parser("export", parents=[common, filters], help="write entries as JSON lines, oldest first")
    e.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    q = sub.add_parser("query", parents=[common, filters], help="show entries as a table, newest first")
    q.add_argument("--limit", type=int, default=100, help="at most this many (default 100, max 1000)")
    q.add_argument("--before-seq", type=int, metavar="SEQ", help="only entries older than SEQ (paging)")
    return p


async def _verify(log: Any, args: argparse.Namespace) -> int:
    state = {"next": PROGRESS_EVERY}

    def progress(checked: int) -> None:
        if not args.quiet and checked >= state["next"]:
            print(f"audit verify: {checked} entries checked...", file=sys.stderr, flush=True)
            state["next"] = checked + PROGRESS_EVERY

    result = await log.verify(args.expect_head, progress=progress)
    if result.ok:
        print(f"audit log OK: {result.checked} entries checked")
        print(f"head {result.head}")
        return 0
    print(f"audit log BROKEN at seq {result.first_bad_seq}: {result.reason}")
    print(f"{result.checked} entries checked before the break; last good head {result.head}")
    return 1


def _filters(args: argparse.Namespace) -> dict:
    return {"actor": args.actor, "member": args.member, "action": args.action,
            "since_ms": args.since, "until_ms": args.until}


async def _export(log: Any, args: argparse.Namespace) -> int:
    out: TextIO
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            n = await log.export(out, **_filters(args))
    else:
        n = await log.export(sys.stdout, **_filters(args))
    print(f"audit export: {n} entries", file=sys.stderr)
    return 0


async def _query(log: Any, args: argparse.Namespace) -> int:
    from protocol.canonical_json import encode_canonical

    entries = await log.query(limit=args.limit, before_seq=args.before_seq, **_filters(args))
    rows = [("SEQ", "TIME (UTC)", "ACTOR", "ACTION", "MEMBER", "SERVICE", "DETAILS")]
    for e in entries:
        rows.append((str(e.seq), _fmt_ts(e.ts), e.actor, e.action, e.member or "-", e.service or "-",
                     encode_canonical(e.details).decode("utf-8")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1])
    if not entries:
        print("(no entries)")
    return 0


async def _run(args: argparse.Namespace) -> int:
    from sharon_server.audit import open_audit
    from sharon_server.config import load_config
    from sharon_server.storage.database import open_database

    flags = [f for f in (("--data-dir", args.data_dir), ("--database-url", args.database_url),
                         ("--config", args.config)) if f[1]]
    config = load_config([x for pair in flags for x in pair])
    db = await open_database(config.effective_database_url)
    try:
        log = await open_audit(db, lambda: int(time.time() * 1000))
        if args.command == "verify":
            return await _verify(log, args)
        if args.command == "export":
            return await _export(log, args)
        return await _query(log, args)
    finally:
        await db.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one audit command; returns the exit code (0 ok, 1 broken or failed, 2 usage)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return asyncio.run(_run(args))
    except Exception as exc:  # noqa: BLE001 - a shell command reports, it does not trace back
        # Never 0: a log that could not be read is not a verified log.
        print(f"sharon-server audit: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
