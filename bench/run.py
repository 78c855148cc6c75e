"""Run the benchmark suite: ``python -m bench [--quick | --full] [--scenarios a,b] [--out DIR]``.

Each scenario starts the real server as its own process on a fresh data directory (and,
for the fan-out ratio, the bare autobahn server), drives it from the separate driver
process, and writes ``OUT/<date>-<scenario>.json`` (``<date>-quick-<scenario>.json`` for
the quick profile). At the end a Markdown summary, every target of docs/performance.md
beside what was measured and the ratio to the bare stack, is written to
``OUT/<date>[-quick]-summary.md`` and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.procs import ROOT
from bench.report import summary_markdown
from bench.scenarios import PROFILES, SCENARIOS, Ctx

__all__ = ["main", "run_suite"]


def machine() -> Dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if os.environ.get("SHARON_BENCH_COMMIT"):
        commit = os.environ["SHARON_BENCH_COMMIT"]
    else:
        commit = _git_commit()
    try:
        import uvloop  # noqa: F401

        driver_loop = "uvloop"
    except ImportError:
        driver_loop = "asyncio"
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit, "driver_loop": driver_loop}


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sharon_server", "protocol", "rooms"],
                               cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip()
        if dirty:
            commit += " + uncommitted server changes"
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit


def rerun_at_commit(rev: str, out: str, argv: Optional[List[str]], module: str = "bench") -> int:
    """``python -m module`` again with this command's arguments (``argv``, or the command
    line's) less ``--commit``, against the server as committed at ``rev``; ``--out`` made
    absolute, since the child runs elsewhere."""
    rest = list(sys.argv[1:] if argv is None else argv)
    if "--commit" in rest:
        i = rest.index("--commit")
        del rest[i:i + 2]
    rest = [a for a in rest if not a.startswith("--commit=")]
    if "--out" not in rest:
        rest += ["--out", str(Path(out).resolve())]
    else:
        j = rest.index("--out")
        rest[j + 1] = str(Path(rest[j + 1]).resolve())
    return run_at_commit(rev, rest, module)


def run_at_commit(rev: str, argv: List[str], module: str = "bench") -> int:
    """Run this suite against the server as committed at ``rev``, not the working tree.

    The server sources at ``rev`` (``git archive``) go to a scratch directory, the current
    bench/ is copied beside them, and ``python -m bench`` runs there with the same
    arguments: other people's half-finished edits in the tree do not leak into the figures.
    """
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    snap = Path(tempfile.mkdtemp(prefix=f"sharon-bench-src-{commit}-"))
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
        shutil.rmtree(snap / "bench", ignore_errors=True)
        shutil.copytree(ROOT / "bench", snap / "bench", ignore=shutil.ignore_patterns("results", "__pycache__"))
        # Byte-compiled, as an installed server is: with PYTHONDONTWRITEBYTECODE set (as on
        # our machines) every start would otherwise compile ~90 modules (~0.1 s, ~2 MiB).
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0"]
                       + [str(snap / d) for d in ("sharon_server", "protocol", "rooms")], check=True)
        env = dict(os.environ, SHARON_BENCH_COMMIT=commit, PYTHONPATH=str(snap))
        print(f"running the suite against {commit} (sources in {snap})", flush=True)
        child = subprocess.Popen([sys.executable, "-m", module] + argv, cwd=snap, env=env)
        try:
            return child.wait()
        except BaseException:
            child.terminate()
            child.wait(60)
            raise
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_suite(profile: str, names: List[str], out_dir: Path, work_dir: Optional[Path] = None,
                    keep: bool = False, say=print, uvloop: bool = True) -> Dict[str, Any]:
    """Run ``names`` in order; returns ``{"results": {name: result}, "summary_path": ...}``."""
    raise_nofile()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sharon-bench-", dir=str(work_dir) if work_dir else None))
    ctx = Ctx(profile, tmp, say=say, uvloop=uvloop)
    date = dt.date.today().isoformat()
    stem = date if profile == "full" else f"{date}-{profile}"
    info = machine()
    results: Dict[str, Any] = {}
    t_suite = time.perf_counter()
    try:
        for i, name in enumerate(names, 1):
            say(f"[{i}/{len(names)}] {name} ({profile}) …")
            t0 = time.perf_counter()
            try:
                result = await SCENARIOS[name](ctx)
                result["status"] = "ok"
            except Exception as exc:  # noqa: BLE001 - one failed scenario must not lose the others
                import traceback

                traceback.print_exc()
                result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "steps": []}
            result.update(scenario=name, profile=profile, date=date, machine=info,
                          elapsed_s=round(time.perf_counter() - t0, 1), sizes=_jsonable(ctx.sizes))
            results[name] = result
            path = out_dir / f"{stem}-{name}.json"
            path.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
            say(f"    done in {result['elapsed_s']} s → {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    md = summary_markdown(results, profile, date, info, round(time.perf_counter() - t_suite, 1))
    summary_path = out_dir / f"{stem}-summary.md"
    summary_path.write_text(md, encoding="utf-8")
    return {"results": results, "summary_path": summary_path, "markdown": md}


def _jsonable(sizes: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(json.dumps(sizes, default=str))


def _terminate_gracefully() -> None:
    """SIGTERM unwinds like Ctrl-C, so every scenario's ``finally`` stops its servers."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: Optional[List[str]] = None) -> int:
    _terminate_gracefully()
    p = argparse.ArgumentParser(prog="python -m bench", description="Run the SHaRON benchmark suite.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", dest="profile", const="quick", help="about 1 minute")
    g.add_argument("--full", action="store_const", dest="profile", const="full", help="about 10 minutes (default)")
    g.add_argument("--smoke", action="store_const", dest="profile", const="smoke",
                   help="tiny sizes, seconds; checks that everything runs (the test suite uses it)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where results go (default bench/results)")
    p.add_argument("--keep", action="store_true", help="keep the scratch data directories")
    p.add_argument("--no-uvloop", action="store_true", help="run the driver on the plain asyncio loop")
    p.add_argument("--renice", action="store_true",
                   help="run the server and the driver at nice -10 (needs root): less noise from "
                        "other processes on a shared machine")
    p.add_argument("--commit", metavar="REV",
                   help="measure the server as committed at REV (e.g. HEAD), not the working tree")
    args = p.parse_args(argv)
    if args.commit:
        return rerun_at_commit(args.commit, args.out, argv)
    profile = args.profile or "full"
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    names = [n for n in SCENARIOS if n in names]  # canonical order
    assert profile in PROFILES
    if args.renice:
        os.environ["SHARON_BENCH_NICE"] = "-10"
    out = asyncio.run(run_suite(profile, names, Path(args.out), keep=args.keep, uvloop=not args.no_uvloop))
    print()
    print(out["markdown"])
    failed = [n for n, r in out["results"].items() if r.get("status") != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
