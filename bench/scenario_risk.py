"""Risk detection's cost to clean messages (issue #6): the same load on two servers, one
with every feature and one with every feature but ``risk`` (``SHARON_FEATURES``).

Both servers run side by side for the whole scenario; their steps are interleaved (on,
off, off, on, ...) so that the noise of a shared machine falls on both alike. Each step
saturates one room of N live receivers from one sender (deliveries/s) and then measures
acknowledged sends into a room with no other member (msgs/s). The message bodies are
ordinary prose (no lexicon hits), so the figure is what detection costs a clean message.
The result is the ratio of the medians (on / off); the target is a cost under 10 %, i.e.
a ratio of at least 0.90. On a shared machine the server is often starved of CPU, so the
ratios of deliveries (and sends) per second of *server CPU* are reported too: they measure
what the server spends per message, whatever else the machine is doing.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.procs import ServerProc
from bench.seed import seed_accounts
from sharon_server.features import INSTALL_ORDER

__all__ = ["scenario_risk", "CLEAN_TEXT"]

CLEAN_TEXT = ("had a quiet evening, made soup and watched a film with my sister; "
              "feeling calmer now, going to read for a bit and sleep early. ")
"""Padding of every message: everyday peer-support prose that matches nothing."""

SIZES = {
    "full": {"receivers": 100, "rounds": 6, "step_s": 4.0, "window": 40, "send_window": 16},
    "quick": {"receivers": 100, "rounds": 3, "step_s": 2.0, "window": 40, "send_window": 16},
    "smoke": {"receivers": 3, "rounds": 1, "step_s": 0.3, "window": 4, "send_window": 2},
}


async def scenario_risk(ctx: Any) -> Dict[str, Any]:
    """Deliveries/s and acked sends/s with risk detection on vs off, interleaved A/B."""
    from bench.scenarios import measured

    sz = SIZES[ctx.profile]
    n = sz["receivers"]
    without_risk = ",".join(f for f in INSTALL_ORDER if f != "risk")
    setups: Dict[str, Dict[str, Any]] = {}
    steps: List[Dict[str, Any]] = []
    try:
        for mode in ("on", "off"):
            data = ctx.fresh_dir(f"risk-{mode}")
            tokens = data.parent / f"{data.name}-tokens.json"
            await asyncio.to_thread(seed_accounts, data / "server", n + 1, tokens)
            env = {} if mode == "on" else {"SHARON_FEATURES": without_risk}
            server = await asyncio.to_thread(ServerProc("sharon", data / "server", env=env).start)
            driver = await ctx.driver()
            setups[mode] = {"server": server, "driver": driver}
            await driver.call("connect", host="127.0.0.1", port=server.port, group="sender",
                              tokens_file=str(tokens), start=n, count=1)
            await driver.call("connect", host="127.0.0.1", port=server.port, group="receivers",
                              tokens_file=str(tokens), count=n)
            room = (await driver.call("create_room", group="sender", name="evening"))["result"]["room_id"]
            joined = await driver.call("join", group="receivers", room_id=room)
            if joined["result"]["errors"]:
                raise RuntimeError(f"join errors: {joined['result']['errors']}")
            alone = (await driver.call("create_room", group="sender", name="alone"))["result"]["room_id"]
            await driver.call("sync", group="receivers")
            setups[mode].update(room=room, alone=alone)
            ctx.say(f"  risk {mode}: server up, {n} receivers live")
        profile: Optional[Dict[str, float]] = None
        results: Dict[str, Dict[str, List[float]]] = {
            m: {"deliveries": [], "sends": [], "deliveries_per_cpu_s": [], "sends_per_cpu_s": []} for m in setups}
        for round_no in range(sz["rounds"]):
            order = ("on", "off") if round_no % 2 == 0 else ("off", "on")
            for mode in order:
                s = setups[mode]
                r = await measured(s["server"], s["driver"], "latency", senders="sender", rooms=[s["room"]],
                                   receivers=n, rate=None, window=sz["window"], duration_s=sz["step_s"],
                                   warmup_s=min(0.5, sz["step_s"]), grace_s=15.0, pad_text=CLEAN_TEXT)
                r.update(label=f"risk {mode}, round {round_no + 1}, {n} receivers, {sz['window']} in flight",
                         mode=mode, kind="deliveries")
                steps.append(r)
                results[mode]["deliveries"].append(r["deliveries_per_s"] or 0.0)
                if r.get("server_cpu_pct"):
                    results[mode]["deliveries_per_cpu_s"].append((r["deliveries_per_s"] or 0.0) * 100 / r["server_cpu_pct"])
                a = await measured(s["server"], s["driver"], "latency", senders="sender", rooms=[s["alone"]],
                                   receivers=0, rate=None, window=sz["send_window"], duration_s=sz["step_s"],
                                   warmup_s=min(0.5, sz["step_s"]), pad_text=CLEAN_TEXT)
                a.update(label=f"risk {mode}, round {round_no + 1}, acked sends, {sz['send_window']} in flight",
                         mode=mode, kind="sends")
                steps.append(a)
                results[mode]["sends"].append(a["msgs_per_s"] or 0.0)
                if a.get("server_cpu_pct"):
                    results[mode]["sends_per_cpu_s"].append((a["msgs_per_s"] or 0.0) * 100 / a["server_cpu_pct"])
                ctx.say(f"  {r['label']}: {r['deliveries_per_s']} deliveries/s; "
                        f"acked sends {a['msgs_per_s']} msg/s (server CPU {r['server_cpu_pct']}%)")
        profile = await _risk_share(ctx, setups["on"], n, sz)
    finally:
        for s in setups.values():
            await s["driver"].stop()
            await asyncio.to_thread(s["server"].stop)
    medians = {m: {k: (statistics.median(v) if v else None) for k, v in d.items()} for m, d in results.items()}
    ratio = {}
    for k in ("deliveries", "sends", "deliveries_per_cpu_s", "sends_per_cpu_s"):
        on, off = medians["on"][k], medians["off"][k]
        ratio[k] = round(on / off, 3) if on and off else None
    cost = {k: (round(1 - v, 3) if v is not None else None) for k, v in ratio.items()}
    ctx.say(f"  risk detection on/off: deliveries {ratio['deliveries']}, acked sends {ratio['sends']}; "
            f"per server CPU-second: deliveries {ratio['deliveries_per_cpu_s']}, sends {ratio['sends_per_cpu_s']}")
    if profile is not None:
        ctx.say(f"  share of the server's samples in risk code (py-spy): {profile}")
    return {"steps": steps, "medians": medians, "ratio_on_off": ratio, "cost": cost,
            "risk_share_of_server_samples": profile,
            "target_met": bool(ratio["deliveries"] is not None and ratio["deliveries"] >= 0.9)}


async def _risk_share(ctx: Any, setup: Dict[str, Any], n: int, sz: Dict[str, Any]) -> Optional[Dict[str, float]]:
    """Where py-spy is installed: the share of the "on" server's samples spent in risk code
    during one more step of each kind. It does not depend on what else the machine runs."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists() or ctx.profile == "smoke":
        return None
    out: Dict[str, float] = {}
    for kind, room, receivers, window in (("deliveries", setup["room"], n, sz["window"]),
                                          ("sends", setup["alone"], 0, sz["send_window"])):
        raw = ctx.work_dir / f"risk-spy-{kind}.txt"
        proc = await asyncio.create_subprocess_exec(
            str(spy), "record", "--format", "raw", "--rate", "200", "-d", str(int(sz["step_s"] * 3)),
            "-o", str(raw), "--pid", str(setup["server"].pid),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await setup["driver"].call("latency", senders="sender", rooms=[room], receivers=receivers, rate=None,
                                   window=window, duration_s=sz["step_s"] * 3, warmup_s=0.5, grace_s=15.0,
                                   pad_text=CLEAN_TEXT)
        await proc.wait()
        total = risky = 0
        if raw.exists():
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if count.isdigit():
                    total += int(count)
                    risky += int(count) if "risk.py" in stack else 0
        if total:
            out[kind] = round(100.0 * risky / total, 2)
    return out or None
