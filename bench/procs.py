"""Processes the runner starts: the real server, the bare baseline, and the load driver.

Servers run with their soft RLIMIT_NOFILE raised to the hard limit (the 10,000-connection
scenarios need it) through a tiny ``python -c`` wrapper that then calls the real entry
point. ``Sampler`` watches a process with psutil: CPU time over a step (user + system,
so 100 % = one core) and resident memory (peak and last).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import psutil

__all__ = ["ServerProc", "DriverProc", "Sampler", "free_port", "listen_overflows", "FAST_HASH_ENV", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent
FAST_HASH_ENV = {
    # Cheap Argon2id so that accounts can be made quickly; production keeps the defaults.
    "SHARON_PASSWORD_TIME_COST": "1",
    "SHARON_PASSWORD_MEMORY_KIB": "8192",
    "SHARON_PASSWORD_PARALLELISM": "1",
    "SHARON_LOG_FORMAT": "json",
}
_WRAPPER = (
    "import resource, sys; s, h = resource.getrlimit(resource.RLIMIT_NOFILE); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (h, h)); "
    "sys.argv[0] = {name!r}; from {module} import main; sys.exit(main(sys.argv[1:]))"
)


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (TcpExt)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for keys, values in zip(lines[::2], lines[1::2]):
        if keys.startswith("TcpExt:"):
            return int(dict(zip(keys.split(), values.split())).get("ListenOverflows", 0))
    return 0


def renice(pid: int) -> None:
    """Give a benchmark process priority when ``SHARON_BENCH_NICE`` asks for it (``--renice``)."""
    value = os.environ.get("SHARON_BENCH_NICE")
    if value:
        try:
            psutil.Process(pid).nice(int(value))
        except (psutil.Error, OSError, ValueError):
            pass


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProc:
    """A server process (``kind`` "sharon" or "bare-asyncio"/"bare-epoll") on 127.0.0.1."""

    def __init__(self, kind: str = "sharon", data_dir: Optional[Path] = None,
                 env: Optional[Dict[str, str]] = None, port: Optional[int] = None) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.lines: List[str] = []
        self.listening: Optional[Dict[str, Any]] = None
        self.spawned_at = 0.0
        self.listening_at = 0.0
        self._ready = threading.Event()
        self._reader: Optional[threading.Thread] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> List[str]:
        if self.kind == "sharon":
            assert self.data_dir is not None
            code = _WRAPPER.format(name="sharon-server", module="sharon_server.main")
            return [sys.executable, "-c", code, "--data-dir", str(self.data_dir),
                    "--listen", f"127.0.0.1:{self.port}"]
        reactor = self.kind.split("-", 1)[1]
        code = _WRAPPER.format(name="bare-server", module="bench.bare_server")
        return [sys.executable, "-c", code, "--port", str(self.port), "--reactor", reactor]

    def start(self, timeout_s: float = 120.0) -> "ServerProc":
        """Spawn and block until the server logs that it listens."""
        env = dict(os.environ)
        env.update(FAST_HASH_ENV)
        env.update(self.extra_env)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._ready.clear()
        self.listening = None
        self.spawned_at = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, text=True, bufsize=1, cwd=str(ROOT))
        renice(self.proc.pid)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout_s) or self.listening is None:
            tail = "".join(self.lines[-40:])
            self.stop()
            raise RuntimeError(f"{self.kind} server did not start:\n{tail}")
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if len(self.lines) < 5000:
                self.lines.append(line)
            if '"server.listening"' in line or '"bare.listening"' in line:
                try:
                    self.listening = json.loads(line)
                except ValueError:
                    self.listening = {}
                self.listening_at = time.perf_counter()
                self._ready.set()
            elif "server.start_failed" in line:
                self._ready.set()
        self._ready.set()

    def wait_health(self, timeout_s: float = 30.0, interval_s: float = 0.002) -> float:
        """Poll ``GET /health`` until it answers 200; returns seconds since spawn."""
        deadline = time.perf_counter() + timeout_s
        url = f"http://127.0.0.1:{self.port}/health"
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - self.spawned_at
            except OSError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + "".join(self.lines[-40:]))
            time.sleep(interval_s)
        raise TimeoutError("no /health answer")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader:
            self._reader.join(5)

    def errors(self) -> List[str]:
        """Log lines at error/critical level (for the results)."""
        return [ln.strip() for ln in self.lines if '"level": "error"' in ln or '"level":"error"' in ln
                or '"level": "critical"' in ln][:20]


class Sampler:
    """CPU and RSS of one process over a step; a background thread samples RSS peaks."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.p = psutil.Process(pid)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.rss_peak = 0
        self._cpu0 = 0.0
        self._t0 = 0.0

    def _cpu(self) -> float:
        t = self.p.cpu_times()
        return t.user + t.system

    def _main_cpu(self) -> float:
        """CPU time of the server's main (reactor) thread alone: the thread that bounds its
        throughput; the rest is the SQLite writer and readers, which run beside it."""
        for th in self.p.threads():
            if th.id == self.p.pid:
                return th.user_time + th.system_time
        return 0.0

    def rss(self) -> int:
        return self.p.memory_info().rss

    def __enter__(self) -> "Sampler":
        self._sys0 = psutil.cpu_times()
        self._drops0 = listen_overflows()
        self._cpu0 = self._cpu()
        self._main0 = self._main_cpu()
        self._t0 = time.perf_counter()
        self.rss_peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.rss_peak = max(self.rss_peak, self.rss())
            except psutil.Error:
                return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        self.wall = time.perf_counter() - self._t0
        try:
            self.cpu_s = self._cpu() - self._cpu0
            self.main_cpu_s = self._main_cpu() - self._main0
            self.rss_end = self.rss()
        except psutil.Error:
            self.cpu_s, self.main_cpu_s, self.rss_end = 0.0, 0.0, 0
        self.rss_peak = max(self.rss_peak, self.rss_end)
        self.listen_drops = listen_overflows() - self._drops0
        sys1 = psutil.cpu_times()
        total = sum(sys1) - sum(self._sys0)
        idle = (sys1.idle + getattr(sys1, "iowait", 0.0)) - (self._sys0.idle + getattr(self._sys0, "iowait", 0.0))
        cores = psutil.cpu_count() or 1
        self.machine_busy_pct = 100 * cores * (total - idle) / total if total > 0 else None

    def report(self) -> Dict[str, Any]:
        """CPU % over the step (100 = one core), RSS at the end and at its peak (MiB)."""
        return {"server_cpu_pct": round(100 * self.cpu_s / self.wall, 1) if self.wall > 0 else None,
                "server_main_thread_cpu_pct": round(100 * self.main_cpu_s / self.wall, 1) if self.wall > 0 else None,
                "server_rss_mib": round(self.rss_end / 2**20, 1),
                "server_rss_peak_mib": round(self.rss_peak / 2**20, 1),
                "listen_queue_drops": self.listen_drops,
                "machine_busy_pct": None if self.machine_busy_pct is None else round(self.machine_busy_pct, 1)}


class DriverProc:
    """The load driver as a child process, one JSON command per line."""

    def __init__(self, uvloop: bool = True) -> None:
        self.uvloop = uvloop
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.hello: Dict[str, Any] = {}

    async def start(self) -> "DriverProc":
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        args = [sys.executable, "-m", "bench.driver"] + ([] if self.uvloop else ["--no-uvloop"])
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=str(ROOT),
            limit=64 * 1024 * 1024)
        renice(self.proc.pid)
        self.hello = await self._read()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _read(self) -> Dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the driver exited")
        return json.loads(line)

    async def call(self, cmd: str, timeout_s: float = 600.0, **args: Any) -> Dict[str, Any]:
        """Run one command; returns its reply (``result``, ``driver_cpu_pct``, ``wall_s``)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(dict(args, cmd=cmd)) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(self._read(), timeout_s)
        if not reply.get("ok"):
            raise RuntimeError(f"driver {cmd} failed: {reply.get('error')}")
        return reply

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.call("quit", timeout_s=15)
            await asyncio.wait_for(self.proc.wait(), 15)
        except (Exception, asyncio.TimeoutError):  # noqa: BLE001
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
