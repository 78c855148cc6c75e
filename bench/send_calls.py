"""What a plain message costs the server, counted rather than timed
(``python -m bench.send_calls``).

The acked-send scenario's rates swing by 30 % on this machine between two runs of the same
commit, so "feature set A slows plain messaging down against B" cannot be settled by timing
alone. This tool counts instead. For each feature set it starts the real server on
127.0.0.1, one member sends plain messages to their own chat room over a real WebSocket with
one send in flight (so every group commit holds exactly one event and the work per message
does not depend on timing), and ``cProfile`` runs on the server's main (reactor) thread for
a measured window only, switched on and off by ``SIGUSR1`` after a warm-up.

Function calls per message are then a count, repeatable from run to run; the table names
the functions whose calls per message differ between the feature sets, so any work a
feature adds to a plain message shows by name. The profiled seconds per message are
printed too, but those are inflated by the profiler and as noisy as any timing here.

    python -m bench.send_calls                         # room core vs the issue-4 features
    python -m bench.send_calls --sets " " all default  # names: " " = room core, "all" = the
                                                       # issue-4 features, "default" = no limit
    python -m bench.send_calls --messages 4000 --repeat 2
    python -m bench.send_calls --instructions --messages 500   # instructions per thread, callgrind
    python -m bench.send_calls --commit f338f3d                # the server as committed at a revision

With ``--instructions`` the server runs under valgrind's callgrind instead, which counts
the machine instructions of every thread (the main thread, the SQLite writer, the readers)
over the same window: all the work a plain message causes, C included (SQLite, Ed25519,
JSON), as a count that repeats to a fraction of a percent.

Writes ``bench/results/<date>-send-calls[-instructions][-N-receivers].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import msgpack

from bench.procs import _WRAPPER, ROOT, ServerProc
from bench.seed import seed_accounts
from bench.wsclient import connect as ws_connect

ISSUE4 = "spaces,dms,content,social,media"
NAMES = {" ": "room core", ISSUE4: "room core + issue-4 features", "default": "every feature"}
SUBPROTOCOL = "sharon.v1.msgpack"

_PROFILED_WRAPPER = (
    "import cProfile, os, resource, signal, sys\n"
    "s, h = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))\n"
    "_prof, _state, _out = cProfile.Profile(), [0], os.environ['SHARON_BENCH_PROFILE']\n"
    "def _toggle(signum, frame):\n"
    "    if _state[0] == 0:\n"
    "        _state[0] = 1\n"
    "        _prof.enable()\n"
    "    elif _state[0] == 1:\n"
    "        _prof.disable()\n"
    "        _state[0] = 2\n"
    "        _prof.dump_stats(_out + '.tmp')\n"
    "        os.replace(_out + '.tmp', _out)\n"
    "signal.signal(signal.SIGUSR1, _toggle)\n"
    "sys.argv[0] = 'sharon-server'\n"
    "from sharon_server.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


class ProfiledServer(ServerProc):
    """The real server, with cProfile on its main thread between two ``SIGUSR1``."""

    def __init__(self, data_dir: Path, profile_to: Path, features: str) -> None:
        env = {"SHARON_BENCH_PROFILE": str(profile_to)}
        if features != "default":
            env["SHARON_FEATURES"] = features
        super().__init__("sharon", data_dir, env=env)
        self.profile_to = profile_to

    def command(self) -> List[str]:
        return [sys.executable, "-c", _PROFILED_WRAPPER, "--data-dir", str(self.data_dir),
                "--listen", f"127.0.0.1:{self.port}"]

    async def window_opens(self) -> None:
        os.kill(self.pid, signal.SIGUSR1)

    async def window_closes(self, messages: int) -> Dict[str, Any]:
        os.kill(self.pid, signal.SIGUSR1)
        await _wait_for(self.profile_to, self)
        return _digest(pstats.Stats(str(self.profile_to)), messages)


class CountedServer(ServerProc):
    """The real server under valgrind's callgrind, counting machine instructions per thread
    only between ``callgrind_control -i on`` and ``-i off`` (the warm-up is not counted).
    Instructions are a count: the same run gives the same figure to a fraction of a percent
    whatever else the machine is doing. It runs about 50 times slower than natively."""

    def __init__(self, data_dir: Path, out: Path, features: str) -> None:
        env = {} if features == "default" else {"SHARON_FEATURES": features}
        super().__init__("sharon", data_dir, env=env)
        self.out = out

    def command(self) -> List[str]:
        code = _WRAPPER.format(name="sharon-server", module="sharon_server.main")
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                f"--callgrind-out-file={self.out}", sys.executable, "-c", code,
                "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"]

    def start(self, timeout_s: float = 600.0) -> "CountedServer":
        super().start(timeout_s)
        return self

    async def _control(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec("callgrind_control", *args, str(self.pid),
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        said, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"callgrind_control {' '.join(args)} failed: {said.decode(errors='replace')}")

    async def window_opens(self) -> None:
        await self._control("-i", "on")

    async def window_closes(self, messages: int) -> Dict[str, Any]:
        await self._control("-i", "off")
        await asyncio.to_thread(self.stop, 300.0)  # callgrind writes its files at exit
        threads = []
        for path in sorted(self.out.parent.glob(self.out.name + "-*")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    threads.append(int(line.split()[1]))
        counted = [n for n in threads if n]
        if not counted:
            raise RuntimeError("callgrind counted nothing:\n" + "".join(self.lines[-40:]))
        main, rest = threads[0], sum(threads[1:])
        return {"messages": messages, "instructions_per_msg": round((main + rest) / messages),
                "main_thread_per_msg": round(main / messages), "other_threads_per_msg": round(rest / messages),
                "threads_counted": len(counted)}


class Member:
    """One authenticated connection that sends with one request in flight."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.waiting: Optional[asyncio.Future] = None
        self.next_id = 1

    def _on_frame(self, _conn: Any, payload: bytes, _now: float) -> None:
        frame = msgpack.unpackb(payload, raw=False)
        if self.waiting is not None and not self.waiting.done() and frame.get("id") == self.next_id - 1:
            self.waiting.set_result(frame)

    async def open(self, port: int, token: str) -> None:
        self.conn = await ws_connect("127.0.0.1", port, SUBPROTOCOL, self._on_frame, timeout_s=60)
        reply = await self.call({"op": "auth", "token": token})
        if reply.get("op") != "ok":
            raise RuntimeError(f"auth refused: {reply}")

    async def call(self, frame: Dict[str, Any]) -> Dict[str, Any]:
        frame["id"] = self.next_id
        self.next_id += 1
        self.waiting = asyncio.get_running_loop().create_future()
        self.conn.send_binary(msgpack.packb(frame))
        return await asyncio.wait_for(self.waiting, 60)

    async def sends(self, room: str, tag: str, n: int, body_chars: int) -> None:
        pad = "x" * max(0, body_chars - len(tag) - 8)
        for i in range(n):
            reply = await self.call({"op": "send", "room_id": room, "txn_id": f"{tag}{i}",
                                     "body": f"{tag}{i} {pad}"})
            if reply.get("op") != "ok":
                raise RuntimeError(f"send refused: {reply}")


async def _wait_for(path: Path, server: ProfiledServer, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if server.proc is None or server.proc.poll() is not None:
            raise RuntimeError("server exited before writing its profile:\n" + "".join(server.lines[-40:]))
        if time.monotonic() > deadline:
            raise TimeoutError(f"no profile at {path}")
        await asyncio.sleep(0.05)


async def measure(features: str, messages: int, warmup: int, body_chars: int, work: Path,
                  receivers: int = 0, instructions: bool = False) -> Dict[str, Any]:
    """One server with ``features``; returns its profile (or, with ``instructions``, its
    instruction counts) of ``messages`` plain sends, each delivered live to ``receivers``
    other members of the room."""
    data = Path(tempfile.mkdtemp(prefix="send-calls-", dir=work))
    tokens = data / "tokens.json"
    await asyncio.to_thread(seed_accounts, data / "server", 1 + receivers, tokens)
    server: Any
    if instructions:
        server = CountedServer(data / "server", data / "callgrind.out", features)
    else:
        server = ProfiledServer(data / "server", data / "main-thread.prof", features)
    await asyncio.to_thread(server.start)
    try:
        everyone = json.loads(tokens.read_text())["tokens"]
        member = Member()
        await member.open(server.port, everyone[0])
        reply = await member.call({"op": "create_room", "kind": "chat", "name": "own", "public": True})
        if reply.get("op") != "ok":
            raise RuntimeError(f"create_room refused: {reply}")
        room = reply["room_id"]
        listeners = []
        for token in everyone[1:]:
            listener = Member()
            await listener.open(server.port, token)
            joined = await listener.call({"op": "join", "room_id": room})
            if joined.get("op") != "ok":
                raise RuntimeError(f"join refused: {joined}")
            synced = await listener.call({"op": "sync"})  # live from here on
            if synced.get("op") != "ok":
                raise RuntimeError(f"sync refused: {synced}")
            listeners.append(listener)
        await member.sends(room, "warm", warmup, body_chars)
        await server.window_opens()
        await member.sends(room, "m", messages, body_chars)
        result = await server.window_closes(messages)
        for m in [member, *listeners]:
            m.conn.close()
        return result
    finally:
        await asyncio.to_thread(server.stop)


def _where(key: Tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        try:
            filename = str(Path(filename).resolve().relative_to(ROOT))
        except ValueError:
            pass
    return f"{filename}:{line}({name})"


def _digest(stats: pstats.Stats, messages: int) -> Dict[str, Any]:
    per_fn: Dict[str, Dict[str, float]] = {}
    calls = prim = 0
    tottime = 0.0
    for key, (cc, nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        calls += nc
        prim += cc
        tottime += tt
        entry = per_fn.setdefault(_where(key), {"calls": 0, "tottime_us": 0.0})
        entry["calls"] += nc / messages
        entry["tottime_us"] += tt / messages * 1e6
    return {"messages": messages, "calls_per_msg": round(calls / messages, 2),
            "profiled_us_per_msg": round(tottime / messages * 1e6, 1), "functions": per_fn}


def _compare(runs: Dict[str, List[Dict[str, Any]]], top: int) -> List[Dict[str, Any]]:
    """Functions whose calls per message differ between the first set and each other set."""
    sets = list(runs)
    base = sets[0]
    rows: List[Dict[str, Any]] = []
    names = set()
    for s in sets:
        for r in runs[s]:
            names.update(r["functions"])

    def calls(s: str, name: str) -> float:
        vals = [r["functions"].get(name, {}).get("calls", 0.0) for r in runs[s]]
        return sum(vals) / len(vals)

    for name in names:
        row = {"function": name}
        row.update({s: round(calls(s, name), 3) for s in sets})
        row["max_diff"] = max(abs(row[s] - row[base]) for s in sets)
        if row["max_diff"] >= 0.005:
            rows.append(row)
    rows.sort(key=lambda r: -r["max_diff"])
    return rows[:top]


def _markdown(result: Dict[str, Any]) -> str:
    sets = result["sets"]
    meter = ("callgrind over the whole server process (main thread = the reactor)" if result["instructions"]
             else "cProfile on the main (reactor) thread")
    out = [f"# Work per plain message ({result['date']}, commit {result['commit']})", "",
           f"One member, own chat room with {result['receivers']} other member(s) connected, one send in "
           f"flight; {result['messages']} measured messages after {result['warmup']} warm-up, "
           f"{result['repeat']} run(s) per feature set; {meter}.", ""]
    if result["instructions"]:
        out += ["| feature set | instructions per message: main thread | other threads | total |",
                "|---|---|---|---|"]
        for s in sets:
            runs = result["runs"][s]
            cols = [", ".join(f"{r[k]:,}" for r in runs)
                    for k in ("main_thread_per_msg", "other_threads_per_msg", "instructions_per_msg")]
            out.append(f"| {NAMES.get(s, s)} (`{s.strip() or 'none'}`) | " + " | ".join(cols) + " |")
        return "\n".join(out) + "\n"
    out += ["| feature set | calls per message (each run) | profiled µs per message (each run) |", "|---|---|---|"]
    for s in sets:
        runs = result["runs"][s]
        out.append(f"| {NAMES.get(s, s)} (`{s.strip() or 'none'}`) | "
                   f"{', '.join(str(r['calls_per_msg']) for r in runs)} | "
                   f"{', '.join(str(r['profiled_us_per_msg']) for r in runs)} |")
    out += ["", "Functions whose calls per message differ (mean over runs):", "",
            "| function | " + " | ".join(f"`{s.strip() or 'none'}`" for s in sets) + " |",
            "|---|" + "---|" * len(sets)]
    for row in result["differences"]:
        out.append(f"| `{row['function']}` | " + " | ".join(str(row[s]) for s in sets) + " |")
    if not result["differences"]:
        out.append("| (none) |" + " |" * len(sets))
    return "\n".join(out) + "\n"


def _commit() -> str:
    if os.environ.get("SHARON_BENCH_COMMIT"):  # a snapshot made by --commit
        return os.environ["SHARON_BENCH_COMMIT"]
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


async def amain(args: argparse.Namespace) -> Dict[str, Any]:
    sets = [ISSUE4 if s == "all" else s for s in args.sets]
    work = Path(tempfile.mkdtemp(prefix="sharon-send-calls-"))
    runs: Dict[str, List[Dict[str, Any]]] = {s: [] for s in sets}
    for rep in range(args.repeat):
        for s in sets:
            print(f"[{rep + 1}/{args.repeat}] {NAMES.get(s, s)}: {args.messages} messages ...",
                  file=sys.stderr, flush=True)
            r = await measure(s, args.messages, args.warmup, args.body_chars, work, args.receivers,
                              args.instructions)
            if args.instructions:
                print(f"    {r['main_thread_per_msg']:,} instructions per message on the main thread, "
                      f"{r['other_threads_per_msg']:,} on the others", file=sys.stderr, flush=True)
            else:
                print(f"    {r['calls_per_msg']} calls per message, {r['profiled_us_per_msg']} profiled µs",
                      file=sys.stderr, flush=True)
            runs[s].append(r)
    return {"date": _dt.date.today().isoformat(), "commit": _commit(), "messages": args.messages,
            "warmup": args.warmup, "repeat": args.repeat, "body_chars": args.body_chars,
            "receivers": args.receivers, "instructions": args.instructions, "sets": sets,
            "runs": {s: [{k: v for k, v in r.items() if k != "functions"} for r in rs] for s, rs in runs.items()},
            "differences": [] if args.instructions else _compare(runs, args.top)}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.send_calls", description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", default=[" ", "all"],
                   help='feature sets: a SHARON_FEATURES value, " " for the room core, "all" for the '
                        'issue-4 features, "default" for every feature (first is the baseline)')
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--body-chars", type=int, default=100)
    p.add_argument("--receivers", type=int, default=0,
                   help="other members of the room, connected, who get every message live")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--instructions", action="store_true",
                   help="count machine instructions per thread under valgrind's callgrind instead "
                        "(about 50 times slower; --messages 500 takes about 2 minutes per set)")
    p.add_argument("--commit", metavar="REV", help="measure the server as committed at REV, not the working tree")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    if args.commit:
        from bench.run import rerun_at_commit

        return rerun_at_commit(args.commit, str(args.out), argv, module="bench.send_calls")
    if args.instructions and shutil.which("valgrind") is None:
        p.error("--instructions needs valgrind (Debian: apt-get install valgrind)")
    result = asyncio.run(amain(args))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("-instructions" if args.instructions else "") + (f"-{args.receivers}-receivers" if args.receivers else "")
    stem = args.out / f"{result['date']}-send-calls{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    md = _markdown(result)
    stem.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
