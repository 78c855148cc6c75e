"""The audit log on SQLite and PostgreSQL: appends, queries, export, verification, tampering, shell."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from rooms.audit_chain import GENESIS_PREV, format_head, verify_chain
from sharon_server.audit import AuditLog, entry_from_json, open_audit
from sharon_server.storage.database import Database, open_database
from sharon_server.storage.schema_audit import audit_log

try:  # pytest puts tests/ on sys.path while tests/ is not a package
    from storage_backends import Backend, backend, run  # noqa: F401 - fixtures
except ImportError:  # tests/ became a package
    from tests.storage_backends import Backend, backend, run  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
MOD = "@umod:example.org"
ADMIN = "@uadmin:example.org"
M1 = "@um1:example.org"
M2 = "@um2:example.org"
T0 = 1_800_000_000_000


class Clock:
    """A test clock: each reading is 1000 ms after the previous one."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1000
        return self.now


async def _populate(log: AuditLog) -> None:
    await log.append(MOD, "unmask.request", member=M1, service="ed", details={"reason": "risk"})  # ts T0+1000
    await log.append(ADMIN, "unmask.approve", member=M1, service="ed", details={"request": 1})  # +2000
    await log.append(MOD, "unmask.view", member=M1, service="ed")  # +3000
    await log.append(MOD, "sanction.hide", member=M2, details={"event_id": "$x", "rule": "r1"})  # +4000
    await log.append(ADMIN, "admin.grant", details={"user_id": MOD})  # +5000


# --- tamper helpers: the triggers must go first (as an operator would have to) --------------


async def _drop_triggers(db: Database) -> None:
    async with db.engine.begin() as conn:
        for name in ("audit_log_no_update", "audit_log_no_delete"):
            if db.dialect == "postgresql":
                await conn.exec_driver_sql(f"DROP TRIGGER {name} ON audit_log")
            else:
                await conn.exec_driver_sql(f"DROP TRIGGER {name}")


async def _tamper(db: Database, stmt: Any) -> None:
    await _drop_triggers(db)
    async with db.engine.begin() as conn:
        await conn.execute(stmt)


# --- appending and the head -----------------------------------------------------------------


def test_append_returns_chained_entries_and_head(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        assert log.head() == (0, GENESIS_PREV)
        e1 = await log.append(MOD, "unmask.request", member=M1, service="ed", details={"reason": "risk"})
        e2 = await log.append(ADMIN, "unmask.approve")
        assert (e1.seq, e1.prev_hash, e1.ts) == (1, GENESIS_PREV, T0 + 1000)
        assert (e2.seq, e2.prev_hash, e2.details, e2.member) == (2, e1.hash, {}, None)
        assert log.head() == (2, e2.hash) and log.head_text() == format_head(2, e2.hash)
        stored = await log.query()
        assert stored == [e2, e1]
        assert verify_chain(e.as_chain_entry() for e in reversed(stored)).ok

        # A restart loads the head and carries the chain on.
        reopened = await open_audit(await backend.open(), Clock())
        assert reopened.head() == (2, e2.hash)
        e3 = await reopened.append(MOD, "unmask.view", member=M1)
        assert (e3.seq, e3.prev_hash) == (3, e2.hash)
        assert (await reopened.verify()).ok

    backend.run(go())


def test_details_guard(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        for bad in ({"password": "x"}, {"Access_Token": "x"}, {"nested": [{"client_secret": 1}]},
                    {"a": {"Passphrase": None}}):
            with pytest.raises(ValueError, match="secrets"):
                await log.append(MOD, "x", details=bad)
        with pytest.raises(ValueError, match="exceed"):
            await log.append(MOD, "x", details={"blob": "a" * 20_000})
        with pytest.raises(ValueError):
            await log.append("", "x")
        with pytest.raises(Exception):
            await log.append(MOD, "x", details={"f": 1.5})
        assert log.head() == (0, GENESIS_PREV)
        assert await log.query() == []
        ok = await log.append(MOD, "x", details={"reason_code": "risk", "count": 2})
        assert ok.seq == 1

    backend.run(go())


def test_concurrent_appends_make_a_valid_chain(backend: Backend) -> None:
    """Many coroutines, and two AuditLog instances (like two processes) on one database."""

    async def go() -> None:
        db = await backend.open()
        a = await open_audit(db, Clock())
        b = await open_audit(await backend.open(), Clock())
        tasks = [(a if i % 3 else b).append(f"@u{i % 7}:x", "act", details={"i": i}) for i in range(120)]
        entries = await asyncio.gather(*tasks)
        assert sorted(e.seq for e in entries) == list(range(1, 121))
        assert sorted(e.details["i"] for e in entries) == list(range(120))
        r = await a.verify(page=17)
        assert r.ok and r.checked == 120 and r.head_seq == 120
        assert max(a.head()[0], b.head()[0]) == 120

    backend.run(go())


def test_migration_downgrades_and_upgrades_again(backend: Backend) -> None:
    from alembic import command

    from sharon_server.storage.database import alembic_config

    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)

        def down(c: Any) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0007")

        async with db.engine.begin() as conn:
            await conn.run_sync(down)
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "audit_log" not in names
        await db.migrate()
        fresh = await open_audit(db, Clock())
        assert fresh.head() == (0, GENESIS_PREV)
        await fresh.append(MOD, "x")
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.engine.begin() as conn:
                await conn.execute(sa.delete(audit_log))

    backend.run(go())


# --- queries and export ---------------------------------------------------------------------


def test_query_by_each_filter_time_and_paging(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)

        def seqs(entries: List[Any]) -> List[int]:
            return [e.seq for e in entries]

        assert seqs(await log.query()) == [5, 4, 3, 2, 1]
        assert seqs(await log.query(actor=MOD)) == [4, 3, 1]
        assert seqs(await log.query(member=M1)) == [3, 2, 1]
        assert seqs(await log.query(action="unmask.view")) == [3]
        assert seqs(await log.query(actor=MOD, member=M1)) == [3, 1]
        assert seqs(await log.query(since_ms=T0 + 2000)) == [5, 4, 3, 2]
        assert seqs(await log.query(until_ms=T0 + 2000)) == [1]
        assert seqs(await log.query(since_ms=T0 + 2000, until_ms=T0 + 4000)) == [3, 2]
        assert seqs(await log.query(limit=2)) == [5, 4]
        assert seqs(await log.query(limit=2, before_seq=4)) == [3, 2]
        assert seqs(await log.query(actor=MOD, before_seq=3)) == [1]
        assert await log.query(actor="@nobody:x") == []
        e = (await log.query(action="sanction.hide"))[0]
        assert (e.member, e.service, e.details) == (M2, None, {"event_id": "$x", "rule": "r1"})

    backend.run(go())


def test_export_round_trip(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        buf = io.StringIO()
        assert await log.export(buf) == 5
        lines = buf.getvalue().splitlines()
        parsed = [entry_from_json(json.loads(line)) for line in lines]
        assert parsed == list(reversed(await log.query()))
        assert verify_chain((e.as_chain_entry() for e in parsed), expect_head=log.head()).ok

        filtered = io.StringIO()
        assert await log.export(filtered, member=M1, since_ms=T0 + 2000) == 2
        assert [json.loads(x)["seq"] for x in filtered.getvalue().splitlines()] == [2, 3]

    backend.run(go())


# --- append-only and tampering --------------------------------------------------------------


def test_database_refuses_update_and_delete(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        for stmt in (sa.update(audit_log).where(audit_log.c.seq == 2).values(details="{}"),
                     sa.delete(audit_log).where(audit_log.c.seq == 5)):
            with pytest.raises(DBAPIError, match="append-only"):
                async with db.engine.begin() as conn:
                    await conn.execute(stmt)
        if db.dialect == "postgresql":
            with pytest.raises(DBAPIError, match="append-only"):
                async with db.engine.begin() as conn:
                    await conn.exec_driver_sql("TRUNCATE audit_log")
        assert (await log.verify()).ok

    backend.run(go())


def test_tampered_details_is_reported_as_edited(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        await _tamper(db, sa.update(audit_log).where(audit_log.c.seq == 2).values(details='{"request":2}'))
        r = await log.verify()
        assert (r.ok, r.first_bad_seq, r.reason, r.checked, r.head_seq) == (False, 2, "edited", 1, 1)

    backend.run(go())


@pytest.mark.parametrize("details", ['{"request": 1}', "not json", "[]"])
def test_non_canonical_details_text_is_an_edit(backend: Backend, details: str) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        await _tamper(db, sa.update(audit_log).where(audit_log.c.seq == 2).values(details=details))
        r = await log.verify()
        assert (r.first_bad_seq, r.reason) == (2, "edited")
        assert [e.seq for e in await log.query()] == [5, 4, 3, 2, 1]  # still readable

    backend.run(go())


def test_deleted_row_is_reported(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        await _tamper(db, sa.delete(audit_log).where(audit_log.c.seq == 3))
        r = await log.verify()
        assert (r.ok, r.first_bad_seq, r.reason, r.checked) == (False, 3, "deleted or reordered", 2)

    backend.run(go())


def test_deleted_tail_needs_the_anchor(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        anchor = log.head()
        await _tamper(db, sa.delete(audit_log).where(audit_log.c.seq >= 4))
        assert (await log.verify()).ok  # a chain alone cannot see truncation
        r = await log.verify(anchor)
        assert (r.ok, r.first_bad_seq, r.reason, r.checked) == (False, 5, "truncated", 3)

    backend.run(go())


def test_swapped_rows_are_reported(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        async with db.read_engine.connect() as conn:
            rows = {r.seq: r._asdict() for r in await conn.execute(sa.select(audit_log))}
        await _drop_triggers(db)
        async with db.engine.begin() as conn:
            for seq, other in ((2, 4), (4, 2)):
                values = {k: v for k, v in rows[other].items() if k != "seq"}
                await conn.execute(sa.update(audit_log).where(audit_log.c.seq == seq).values(**values))
        r = await log.verify()
        assert (r.ok, r.first_bad_seq, r.reason) == (False, 2, "edited")

    backend.run(go())


def test_rehashed_rewrite_needs_the_anchor(backend: Backend) -> None:
    """Someone with write access who rewrites and re-hashes the tail fools the chain, not the anchor."""

    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        await _populate(log)
        anchor = log.head()
        await _tamper(db, sa.delete(audit_log).where(audit_log.c.seq >= 3))
        forger = await open_audit(db, Clock())
        for _ in range(3):
            await forger.append(MOD, "nothing.to.see")
        assert (await log.verify()).ok
        r = await log.verify(anchor)
        assert (r.ok, r.first_bad_seq, r.reason) == (False, 5, "head mismatch")

    backend.run(go())


def test_verify_pages_and_reports_progress(backend: Backend) -> None:
    async def go() -> None:
        db = await backend.open()
        log = await open_audit(db, Clock())
        for i in range(25):
            await log.append(MOD, "act", details={"i": i})
        seen: List[int] = []
        r = await log.verify(log.head(), progress=seen.append, page=10)
        assert r.ok and r.checked == 25
        assert seen == [10, 20, 25]

    backend.run(go())


def test_sqlite_query_plans_use_the_indexes(tmp_path: Path) -> None:
    async def go() -> None:
        db = await open_database(_db_url(tmp_path))
        try:
            c = audit_log.c
            cases = [([c.actor == "a"], "ix_audit_log_actor_seq"), ([c.member == "m"], "ix_audit_log_member_seq"),
                     ([c.action == "x"], "ix_audit_log_action_seq"), ([c.ts >= 1, c.ts < 5], "ix_audit_log_ts")]
            async with db.read_engine.connect() as conn:
                for conds, index in cases:
                    stmt = sa.select(audit_log).where(*conds).order_by(c.seq.desc()).limit(100)
                    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True}))
                    plan = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, (1,) * sql.count("?"))
                    assert f"USING INDEX {index}" in " | ".join(r[-1] for r in plan)
        finally:
            await db.close()

    run(go())


# --- the shell ------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SHARON_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "sharon_server", "audit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _db_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'sharon.db').resolve()}"


def test_shell_verify_export_query(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def populate() -> str:
        db = await open_database(_db_url(data))
        try:
            log = await open_audit(db, Clock())
            await _populate(log)
            return log.head_text()
        finally:
            await db.close()

    head = run(populate())
    d = ["--data-dir", str(data)]

    ok = _cli("verify", *d)
    assert ok.returncode == 0, ok.stderr
    assert "5 entries checked" in ok.stdout and f"head {head}" in ok.stdout
    assert _cli("verify", *d, "--expect-head", head).returncode == 0
    assert _cli(*d, "verify").returncode == 0  # common options before the subcommand too
    assert _cli("verify", *d, "--expect-head", "garbage").returncode == 2

    out = tmp_path / "audit.jsonl"
    exp = _cli("export", *d, "--member", M1, "--since", "2027-01-15T08:00:00Z", "-o", str(out))
    assert exp.returncode == 0, exp.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3]
    full = _cli("export", *d)
    entries = [entry_from_json(json.loads(x)) for x in full.stdout.splitlines()]
    assert verify_chain(e.as_chain_entry() for e in entries).ok and len(entries) == 5

    q = _cli("query", *d, "--actor", MOD, "--limit", "2")
    assert q.returncode == 0, q.stderr
    body = q.stdout.splitlines()
    assert body[0].split()[:4] == ["SEQ", "TIME", "(UTC)", "ACTOR"]
    assert [line.split()[0] for line in body[1:]] == ["4", "3"]
    assert "sanction.hide" in body[1] and '{"event_id":"$x","rule":"r1"}' in body[1]
    assert "(no entries)" in _cli("query", *d, "--action", "nope").stdout

    async def tamper() -> None:
        db = await open_database(_db_url(data))
        try:
            await _tamper(db, sa.update(audit_log).where(audit_log.c.seq == 2).values(ts=1))
        finally:
            await db.close()

    run(tamper())
    bad = _cli("verify", *d)
    assert bad.returncode == 1
    assert "BROKEN at seq 2: edited" in bad.stdout and "1 entries checked" in bad.stdout


def test_shell_expect_head_catches_truncation(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def go() -> Dict[str, str]:
        db = await open_database(_db_url(data))
        try:
            log = await open_audit(db, Clock())
            await _populate(log)
            head = log.head_text()
            await _tamper(db, sa.delete(audit_log).where(audit_log.c.seq == 5))
            return {"head": head}
        finally:
            await db.close()

    head = run(go())["head"]
    assert _cli("verify", "--database-url", "sqlite+aiosqlite:///" + str(tmp_path / "no" / "x.db"),
                "--config", str(tmp_path / "missing.toml")).returncode != 0
    assert _cli("verify", "--data-dir", str(data)).returncode == 0
    r = _cli("verify", "--data-dir", str(data), "--expect-head", head)
    assert r.returncode == 1 and "BROKEN at seq 5: truncated" in r.stdout


def test_shell_verify_reports_progress_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    from sharon_server import cli_audit

    data = tmp_path / "data"

    async def populate() -> None:
        db = await open_database(_db_url(data))
        try:
            await _populate(await open_audit(db, Clock()))
        finally:
            await db.close()

    run(populate())
    monkeypatch.setattr(cli_audit, "PROGRESS_EVERY", 2)
    assert cli_audit.main(["verify", "--data-dir", str(data)]) == 0
    captured = capsys.readouterr()
    assert "entries checked..." in captured.err and "5 entries checked" in captured.out
    assert cli_audit.main(["verify", "--data-dir", str(data), "--quiet"]) == 0
    assert "checked..." not in capsys.readouterr().err
