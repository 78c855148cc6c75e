"""The benchmark scenarios (issue #3). Each is ``async def scenario(ctx) -> dict``.

Every scenario starts its own server process(es) on a fresh data directory, drives them
from the separate driver process, and returns ``{"steps": [...], "summary": {...}}``. Each
step carries the server's CPU % (100 = one core) and RSS over that step and the driver's
CPU %. Sizes come from the profile (``full``, ``quick``, ``smoke``); every step is bounded.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import psutil

from bench.procs import DriverProc, Sampler, ServerProc
from bench.seed import seed_accounts, seed_events

__all__ = ["SCENARIOS", "PROFILES", "Ctx"]

PROFILES: Dict[str, Dict[str, Any]] = {
    "full": {
        "latency_receivers": [1, 10, 100, 1000, 5000],
        "latency_rates": {1: [10], 10: [10], 100: [2, 10], 1000: [20], 5000: [5]},
        "latency_step_s": 5.0, "sat_step_s": 5.0, "warmup_s": 1.0,
        "fanout_receivers": [100, 1000, 5000], "fanout_step_s": 3.0,
        "fanout_in_flight": [4000, 16000, 64000],
        "fanout_servers": ["sharon", "bare-asyncio", "bare-epoll"],
        "sends_senders": [1, 10, 100], "sends_windows": [1, 16], "sends_step_s": 4.0,
        "history_sizes": [5_000, 100_000, 1_000_000], "history_requests": 300,
        "idle_counts": [1_000, 10_000], "connect_clients": 10_000, "connect_repeats": 2,
        "startup_runs": 5, "startup_big_runs": 3, "startup_big_events": 1_000_000,
    },
    "quick": {
        "latency_receivers": [1, 100, 1000],
        "latency_rates": {1: [10], 100: [10], 1000: [20]},
        "latency_step_s": 1.5, "sat_step_s": 1.5, "warmup_s": 0.5,
        "fanout_receivers": [1000], "fanout_step_s": 1.5,
        "fanout_in_flight": [4000, 16000],
        "fanout_servers": ["sharon", "bare-asyncio"],
        "sends_senders": [1, 10], "sends_windows": [1, 16], "sends_step_s": 1.0,
        "history_sizes": [5_000, 100_000], "history_requests": 100,
        "idle_counts": [1_000, 5_000], "connect_clients": 5_000, "connect_repeats": 1,
        "startup_runs": 3, "startup_big_runs": 2, "startup_big_events": 100_000,
    },
    "smoke": {
        "latency_receivers": [1, 3],
        "latency_rates": {1: [20], 3: [20]},
        "latency_step_s": 0.3, "sat_step_s": 0.3, "warmup_s": 0.1,
        "fanout_receivers": [3], "fanout_step_s": 0.3,
        "fanout_in_flight": [12],
        "fanout_servers": ["sharon", "bare-asyncio"],
        "sends_senders": [1, 2], "sends_windows": [1], "sends_step_s": 0.3,
        "history_sizes": [300], "history_requests": 3,
        "idle_counts": [5, 10], "connect_clients": 10, "connect_repeats": 1,
        "startup_runs": 1, "startup_big_runs": 1, "startup_big_events": 300,
    },
}


class Ctx:
    """What a scenario needs: sizes, a scratch directory, progress output, the driver."""

    def __init__(self, profile: str, work_dir: Path, say: Callable[[str], None] = print,
                 uvloop: bool = True) -> None:
        self.profile = profile
        self.sizes = PROFILES[profile]
        self.work_dir = work_dir
        self.say = say
        self.uvloop = uvloop
        self._n = 0
        self.big_db: Optional[Dict[str, Any]] = None  # a history database startup can reuse

    def fresh_dir(self, name: str) -> Path:
        self._n += 1
        d = self.work_dir / f"{self._n:02d}-{name}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    async def driver(self) -> DriverProc:
        return await DriverProc(uvloop=self.uvloop).start()


async def measured(server: ServerProc, driver: DriverProc, cmd: str, **args: Any) -> Dict[str, Any]:
    """Run one driver command while sampling the server; the result with CPU and RSS added."""
    with Sampler(server.pid) as s:
        reply = await driver.call(cmd, **args)
    out = dict(reply["result"])
    out.update(s.report())
    out["driver_cpu_pct"] = reply["driver_cpu_pct"]
    out["step_wall_s"] = reply["wall_s"]
    # CPU used by neither the server nor the driver (other processes on a shared machine):
    # when this is high the step was disturbed and its figures are noisy.
    if out.get("machine_busy_pct") is not None and out.get("server_cpu_pct") is not None:
        out["other_cpu_pct"] = round(max(0.0, out["machine_busy_pct"] - out["server_cpu_pct"]
                                         - (reply["driver_cpu_pct"] or 0.0)), 1)
    return out


async def _sharon_with_accounts(ctx: Ctx, name: str, n: int) -> tuple:
    data = ctx.fresh_dir(name)
    tokens = data.parent / f"{data.name}-tokens.json"
    await asyncio.to_thread(seed_accounts, data / "server", n, tokens)
    server = await asyncio.to_thread(ServerProc("sharon", data / "server").start)
    return server, tokens


CONNECT_CONCURRENCY = 50
"""Connection attempts in flight during the connect burst: the server's listen backlog is
Twisted's default of 50, and attempts beyond it overflow the kernel's accept queue, where a
dropped SYN waits 1 s for its retransmission. Steps report ``listen_queue_drops``."""


def _lat_row(r: Dict[str, Any]) -> str:
    la = r["latency_all_ms"]
    return (f"p50 {la['p50']} / p95 {la['p95']} / p99 {la['p99']} ms, {r['msgs_per_s']} msg/s, "
            f"{r['deliveries_per_s']} deliveries/s, server CPU {r['server_cpu_pct']}%, "
            f"driver CPU {r['driver_cpu_pct']}%")


def _window_for(receivers: int) -> int:
    return 64 if receivers <= 10 else 16 if receivers <= 100 else 4 if receivers <= 1000 else 2


async def _rooms_per_size(ctx: Ctx, driver: DriverProc, sizes: List[int]) -> Dict[int, str]:
    """One room per receiver count N, joined by receivers 0..N-1 (nobody live yet)."""
    rooms: Dict[int, str] = {}
    for n in sizes:
        room = (await driver.call("create_room", group="sender", name=f"room of {n}"))["result"]["room_id"]
        joined = await driver.call("join", group="receivers", room_id=room, count=n)
        if joined["result"]["errors"]:
            raise RuntimeError(f"join errors: {joined['result']['errors']}")
        rooms[n] = room
        ctx.say(f"  room with {n} receivers ready ({joined['wall_s']} s)")
    return rooms


# ---------------------------------------------------------------------------------- 1

async def scenario_latency(ctx: Ctx) -> Dict[str, Any]:
    """Delivery latency (send → every receiver has it) at fixed rates and at saturation."""
    sz = ctx.sizes
    sizes = sz["latency_receivers"]
    most = max(sizes)
    server, tokens = await _sharon_with_accounts(ctx, "latency", most + 1)
    driver = await ctx.driver()
    steps: List[Dict[str, Any]] = []
    try:
        await driver.call("connect", host="127.0.0.1", port=server.port, group="sender",
                          tokens_file=str(tokens), start=most, count=1)
        c = await driver.call("connect", host="127.0.0.1", port=server.port, group="receivers",
                              tokens_file=str(tokens), count=most, progress_every=max(1000, most // 5))
        ctx.say(f"  {c['result']['connected']} receivers connected in {c['wall_s']} s")
        rooms = await _rooms_per_size(ctx, driver, sizes)
        await driver.call("sync", group="receivers")
        for n in sizes:
            for rate in sz["latency_rates"].get(n, []):
                r = await measured(server, driver, "latency", senders="sender", rooms=[rooms[n]], receivers=n,
                                   rate=rate, duration_s=sz["latency_step_s"], warmup_s=sz["warmup_s"])
                r["label"] = f"{n} receivers, {rate} msg/s"
                steps.append(r)
                ctx.say(f"  {r['label']}: {_lat_row(r)}")
            r = await measured(server, driver, "latency", senders="sender", rooms=[rooms[n]], receivers=n,
                               rate=None, window=_window_for(n), duration_s=sz["sat_step_s"],
                               warmup_s=sz["warmup_s"])
            r["label"] = f"{n} receivers, saturation (window {_window_for(n)})"
            steps.append(r)
            ctx.say(f"  {r['label']}: {_lat_row(r)}")
    finally:
        await driver.stop()
        await asyncio.to_thread(server.stop)
    return {"steps": steps, "server_errors": server.errors()}


# ---------------------------------------------------------------------------------- 2

async def scenario_fanout(ctx: Ctx) -> Dict[str, Any]:
    """Deliveries/s at saturation: the real server beside bare autobahn, same driver, same run.

    Saturation is offered as a number of sends in flight from one sender; each server's
    ceiling is the best deliveries/s over the loads offered (frames in flight ≈ 4k, 16k, 64k).
    The fixed rates of the latency scenario run here too, so that the latency targets can be
    read beside the bare stack's latency at the same load.
    """
    sz = ctx.sizes
    sizes = sz["fanout_receivers"]
    most = max(sizes)
    steps: List[Dict[str, Any]] = []
    ceilings: Dict[str, Dict[int, float]] = {}
    for kind in sz["fanout_servers"]:
        driver = await ctx.driver()
        if kind == "sharon":
            server, tokens = await _sharon_with_accounts(ctx, "fanout", most + 1)
        else:
            server = await asyncio.to_thread(ServerProc(kind).start)
            tokens = None
        try:
            tok_args: Dict[str, Any] = ({"tokens_file": str(tokens)} if tokens
                                        else {"tokens": ["shr_bare"] * (most + 1)})
            await driver.call("connect", host="127.0.0.1", port=server.port, group="sender",
                              start=most, count=1, **tok_args)
            if kind == "sharon":
                await driver.call("connect", host="127.0.0.1", port=server.port, group="receivers",
                                  count=most, **tok_args)
                rooms = await _rooms_per_size(ctx, driver, sizes)
                await driver.call("sync", group="receivers")
            have = 0
            for n in sizes:
                if kind != "sharon":  # the bare server broadcasts to every synced connection
                    await driver.call("connect", host="127.0.0.1", port=server.port, group="receivers",
                                      start=have, count=n - have, sync=True, **tok_args)
                    have = n
                    room = "!" + "B" * 43
                else:
                    room = rooms[n]
                for rate in sz["latency_rates"].get(n, []):
                    r = await measured(server, driver, "latency", senders="sender", rooms=[room], receivers=n,
                                       rate=rate, duration_s=sz["fanout_step_s"], warmup_s=sz["warmup_s"])
                    r.update(label=f"{kind}, {n} receivers, {rate} msg/s", server=kind)
                    steps.append(r)
                    ctx.say(f"  {r['label']}: {_lat_row(r)}")
                for frames in sz["fanout_in_flight"]:
                    w = max(1, round(frames / n))
                    r = await measured(server, driver, "latency", senders="sender", rooms=[room], receivers=n,
                                       rate=None, window=w, duration_s=sz["fanout_step_s"],
                                       warmup_s=sz["warmup_s"], grace_s=15.0)
                    r.update(label=f"{kind}, {n} receivers, {w} sends in flight", server=kind)
                    steps.append(r)
                    best = ceilings.setdefault(kind, {})
                    best[n] = max(best.get(n, 0.0), r["deliveries_per_s"] or 0.0)
                    ctx.say(f"  {r['label']}: {_lat_row(r)}")
        finally:
            await driver.stop()
            await asyncio.to_thread(server.stop)
    ratios = {}
    for n in sizes:
        sharon = ceilings.get("sharon", {}).get(n)
        for kind in ceilings:
            if kind != "sharon" and sharon and ceilings[kind].get(n):
                ratios[f"{n} vs {kind}"] = round(sharon / ceilings[kind][n], 3)
    return {"steps": steps, "deliveries_per_s": {k: {str(n): v for n, v in d.items()} for k, d in ceilings.items()},
            "ratio": ratios}


# ---------------------------------------------------------------------------------- 3

async def scenario_sends(ctx: Ctx) -> Dict[str, Any]:
    """Sends persisted and acknowledged per second: 1/10/100 senders, one room or one each."""
    sz = ctx.sizes
    counts = sz["sends_senders"]
    most = max(counts)
    server, tokens = await _sharon_with_accounts(ctx, "sends", most)
    driver = await ctx.driver()
    steps: List[Dict[str, Any]] = []
    try:
        await driver.call("connect", host="127.0.0.1", port=server.port, group="all",
                          tokens_file=str(tokens), count=most)
        own: List[str] = []
        for i in range(most):
            own.append((await driver.call("create_room", group="all", index=i, name=f"own {i}"))["result"]["room_id"])
        shared = (await driver.call("create_room", group="all", name="shared"))["result"]["room_id"]
        await driver.call("join", group="all", room_id=shared)
        ctx.say(f"  {most} senders connected, {most} own rooms and one shared room")
        for s in counts:
            await driver.call("connect", host="127.0.0.1", port=server.port, group=f"first{s}",
                              tokens_file=str(tokens), count=s)
            for layout in ("one room", "separate rooms"):
                rooms = [shared] if layout == "one room" else own[:s]
                for w in sz["sends_windows"]:
                    r = await measured(server, driver, "latency", senders=f"first{s}", rooms=rooms, receivers=0,
                                       rate=None, window=w, duration_s=sz["sends_step_s"],
                                       warmup_s=sz["warmup_s"])
                    r.update(label=f"{s} senders, {layout}, {w} in flight each", layout=layout)
                    steps.append(r)
                    a = r["ack_ms"]
                    ctx.say(f"  {r['label']}: {r['msgs_per_s']} msg/s acked, ack p50 {a['p50']} / p99 {a['p99']} ms,"
                            f" server CPU {r['server_cpu_pct']}%, driver CPU {r['driver_cpu_pct']}%,"
                            f" errors {r['send_errors']}")
    finally:
        await driver.stop()
        await asyncio.to_thread(server.stop)
    return {"steps": steps, "server_errors": server.errors()}


# ---------------------------------------------------------------------------------- 4

async def _history_db(ctx: Ctx) -> Dict[str, Any]:
    """A data directory with one room per history size, filled through the storage layer."""
    sizes = ctx.sizes["history_sizes"]
    data = ctx.fresh_dir("history")
    tokens = data.parent / f"{data.name}-tokens.json"
    await asyncio.to_thread(seed_accounts, data / "server", 1, tokens)
    server = await asyncio.to_thread(ServerProc("sharon", data / "server").start)
    driver = await ctx.driver()
    rooms: Dict[int, str] = {}
    try:
        await driver.call("connect", host="127.0.0.1", port=server.port, group="reader",
                          tokens_file=str(tokens), count=1)
        for n in sizes:
            rooms[n] = (await driver.call("create_room", group="reader", name=f"history {n}"))["result"]["room_id"]
    finally:
        await driver.stop()
        await asyncio.to_thread(server.stop)
    ranges: Dict[int, Dict[str, int]] = {}
    t0 = time.perf_counter()
    sender = await asyncio.to_thread(_first_user, data / "server")
    for n in sizes:
        ranges[n] = await asyncio.to_thread(seed_events, data / "server", rooms[n], sender, n)
    gen_s = time.perf_counter() - t0
    total = sum(sizes)
    ctx.say(f"  generated {total:,} events in {gen_s:.1f} s ({total / gen_s:,.0f}/s)")
    info = {"data_dir": data / "server", "tokens": tokens, "rooms": rooms, "ranges": ranges,
            "events": total, "generate_s": round(gen_s, 1)}
    return info


def _first_user(data_dir: Path) -> str:
    import sqlite3

    with sqlite3.connect(str(data_dir / "sharon.db")) as db:
        return db.execute("SELECT user_id FROM accounts LIMIT 1").fetchone()[0]


async def scenario_history(ctx: Ctx) -> Dict[str, Any]:
    """Pages of 100 from the end and from the middle of rooms of 5k, 100k and 1M events."""
    sz = ctx.sizes
    db = await _history_db(ctx)
    ctx.big_db = db
    server = await asyncio.to_thread(ServerProc("sharon", db["data_dir"]).start)
    driver = await ctx.driver()
    steps: List[Dict[str, Any]] = []
    try:
        await driver.call("connect", host="127.0.0.1", port=server.port, group="reader",
                          tokens_file=str(db["tokens"]), count=1)
        for n in sz["history_sizes"]:
            room = db["rooms"][n]
            rng = db["ranges"][n]
            middle = (rng["first_pos"] + rng["last_pos"]) // 2
            for where, frm in (("end", None), ("middle", middle)):
                # A few untimed pages first: the first read of a room warms SQLite's page cache.
                await driver.call("history", group="reader", room_id=room, requests=5, from_pos=frm)
                r = await measured(server, driver, "history", group="reader", room_id=room,
                                   requests=sz["history_requests"], from_pos=frm, limit=100)
                r.update(label=f"{n:,} events, page of 100 from the {where}", events_in_room=n, where=where)
                steps.append(r)
                lat = r["latency_ms"]
                ctx.say(f"  {r['label']}: p50 {lat['p50']} / p95 {lat['p95']} / p99 {lat['p99']} ms, "
                        f"server CPU {r['server_cpu_pct']}%, RSS {r['server_rss_mib']} MiB")
    finally:
        await driver.stop()
        await asyncio.to_thread(server.stop)
    return {"steps": steps, "generate_s": db["generate_s"], "events_total": db["events"],
            "server_errors": server.errors()}


# ---------------------------------------------------------------------------------- 5

async def scenario_idle(ctx: Ctx) -> Dict[str, Any]:
    """Server RSS idle, then with 1,000 and 10,000 idle authenticated (live) connections."""
    counts = ctx.sizes["idle_counts"]
    most = max(counts)
    server, tokens = await _sharon_with_accounts(ctx, "idle", most)
    driver = await ctx.driver()
    steps: List[Dict[str, Any]] = []
    try:
        await asyncio.sleep(1.0)
        idle = Sampler(server.pid)
        base = idle.rss()
        steps.append({"label": "idle, no connections", "connections": 0,
                      "server_rss_mib": round(base / 2**20, 1)})
        ctx.say(f"  idle: {base / 2**20:.1f} MiB")
        have = 0
        for n in counts:
            r = await measured(server, driver, "connect", host="127.0.0.1", port=server.port, group="idle",
                               tokens_file=str(tokens), start=have, count=n - have, sync=True,
                               progress_every=max(1000, n // 5))
            have = n
            await asyncio.sleep(1.0)
            rss = Sampler(server.pid).rss()
            r.update(label=f"{n:,} idle authenticated connections", connections=n,
                     server_rss_mib=round(rss / 2**20, 1),
                     per_connection_kib=round((rss - base) / max(1, n) / 1024, 1))
            steps.append(r)
            ctx.say(f"  {r['label']}: {r['server_rss_mib']} MiB ({r['per_connection_kib']} KiB each), "
                    f"failed {r['failed']}")
    finally:
        await driver.stop()
        await asyncio.to_thread(server.stop)
    return {"steps": steps, "server_errors": server.errors()}


# ---------------------------------------------------------------------------------- 6

async def scenario_startup(ctx: Ctx) -> Dict[str, Any]:
    """Process start to the first answered request: a fresh, an empty and a big database."""
    sz = ctx.sizes
    steps: List[Dict[str, Any]] = []

    def run(label: str, data_dir: Path, runs: int, fresh: bool) -> Dict[str, Any]:
        firsts, listens, own, cpus = [], [], [], []
        for i in range(runs):
            d = data_dir
            if fresh:
                d = data_dir / f"run{i}"
            server = ServerProc("sharon", d)
            server.start()
            firsts.append(server.wait_health())
            # The server's own CPU (all threads) up to its first answer: on a shared machine
            # the wall time mostly measures the other processes, this does not.
            t = psutil.Process(server.pid).cpu_times()
            cpus.append(t.user + t.system)
            listens.append(server.listening_at - server.spawned_at)
            own.append((server.listening or {}).get("startup_ms"))
            rss = Sampler(server.pid).rss()
            server.stop()
        return {"label": label, "runs": runs,
                "to_first_answer_s": {"median": round(statistics.median(firsts), 3), "all": [round(x, 3) for x in firsts]},
                "to_listening_log_s": round(statistics.median(listens), 3),
                "server_cpu_s": {"median": round(statistics.median(cpus), 3), "all": [round(x, 3) for x in cpus]},
                "server_reported_startup_ms": own, "server_rss_mib": round(rss / 2**20, 1)}

    base = ctx.fresh_dir("startup")
    r = await asyncio.to_thread(run, "fresh data directory (creates the database)", base, sz["startup_runs"], True)
    steps.append(r)
    ctx.say(f"  {r['label']}: {r['to_first_answer_s']['median']} s (server CPU {r['server_cpu_s']['median']} s)")
    r = await asyncio.to_thread(run, "empty database (restart)", base / "run0", sz["startup_runs"], False)
    steps.append(r)
    ctx.say(f"  {r['label']}: {r['to_first_answer_s']['median']} s (server CPU {r['server_cpu_s']['median']} s)")
    big = ctx.big_db
    want = sz["startup_big_events"]
    if big is None or big["events"] < want:
        data = ctx.fresh_dir("startup-big")
        tokens = data.parent / f"{data.name}-tokens.json"
        await asyncio.to_thread(seed_accounts, data / "server", 1, tokens)
        server = await asyncio.to_thread(ServerProc("sharon", data / "server").start)
        driver = await ctx.driver()
        try:
            await driver.call("connect", host="127.0.0.1", port=server.port, group="c",
                              tokens_file=str(tokens), count=1)
            room = (await driver.call("create_room", group="c", name="big"))["result"]["room_id"]
        finally:
            await driver.stop()
            await asyncio.to_thread(server.stop)
        sender = await asyncio.to_thread(_first_user, data / "server")
        await asyncio.to_thread(seed_events, data / "server", room, sender, want)
        big = {"data_dir": data / "server", "events": want}
    r = await asyncio.to_thread(run, f"{big['events']:,}-event database (restart)", big["data_dir"],
                                sz["startup_big_runs"], False)
    r["events"] = big["events"]
    steps.append(r)
    ctx.say(f"  {r['label']}: {r['to_first_answer_s']['median']} s (server CPU {r['server_cpu_s']['median']} s)")
    return {"steps": steps}


# ---------------------------------------------------------------------------------- 7

async def scenario_connect(ctx: Ctx) -> Dict[str, Any]:
    """10,000 clients connect and authenticate (token ``auth``), all at once, bounded concurrency."""
    sz = ctx.sizes
    n = sz["connect_clients"]
    steps: List[Dict[str, Any]] = []
    for rep in range(sz["connect_repeats"]):
        server, tokens = await _sharon_with_accounts(ctx, "connect", n)
        driver = await ctx.driver()
        try:
            r = await measured(server, driver, "connect", host="127.0.0.1", port=server.port, group="burst",
                               tokens_file=str(tokens), count=n, concurrency=CONNECT_CONCURRENCY, progress_every=max(1000, n // 5))
            r.update(label=f"{n:,} clients connect + auth (fresh server, cold token cache), run {rep + 1}")
            steps.append(r)
            ctx.say(f"  {r['label']}: {r['elapsed_s']} s ({r['rate_per_s']}/s), failed {r['failed']}, "
                    f"server CPU {r['server_cpu_pct']}%, driver CPU {r['driver_cpu_pct']}%")
            await driver.call("close", group="burst")
            r = await measured(server, driver, "connect", host="127.0.0.1", port=server.port, group="burst",
                               tokens_file=str(tokens), count=n, concurrency=CONNECT_CONCURRENCY, progress_every=max(1000, n // 5))
            r.update(label=f"{n:,} clients reconnect + auth (warm token cache), run {rep + 1}")
            steps.append(r)
            ctx.say(f"  {r['label']}: {r['elapsed_s']} s ({r['rate_per_s']}/s), failed {r['failed']}, "
                    f"server CPU {r['server_cpu_pct']}%, driver CPU {r['driver_cpu_pct']}%")
        finally:
            await driver.stop()
            await asyncio.to_thread(server.stop)
    return {"steps": steps}


from bench.scenario_risk import scenario_risk  # noqa: E402 - issue #6, owned with protocol/risk.py

SCENARIOS: Dict[str, Callable[[Ctx], Any]] = {
    "history": scenario_history,
    "startup": scenario_startup,
    "latency": scenario_latency,
    "fanout": scenario_fanout,
    "sends": scenario_sends,
    "idle": scenario_idle,
    "connect": scenario_connect,
    "risk": scenario_risk,
}
"""Run order: history before startup lets startup reuse the big database (see run.py)."""
