"""The Markdown summary: every target of docs/performance.md beside what was measured.

``targets(results)`` returns one row per target (measured value, ratio to the bare stack
where it applies, and whether it is met); ``summary_markdown`` renders that table and a
compact table of every step of every scenario.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = ["targets", "summary_markdown"]


def _steps(results: Dict[str, Any], name: str) -> List[Dict[str, Any]]:
    return (results.get(name) or {}).get("steps") or []


def _find(results: Dict[str, Any], name: str, label_start: str) -> Optional[Dict[str, Any]]:
    for s in _steps(results, name):
        if s.get("label", "").startswith(label_start):
            return s
    return None


def _fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        x = f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.2f}"
    elif isinstance(x, int):
        x = f"{x:,}"
    return f"{x}{unit}"


def _met(ok: Optional[bool]) -> str:
    return "not run" if ok is None else ("**met**" if ok else "**missed**")


def targets(results: Dict[str, Any]) -> List[Dict[str, str]]:
    """One row per target: scenario, target, measured, vs bare stack, met."""
    rows: List[Dict[str, str]] = []

    def row(scenario: str, target: str, measured: str, bare: str, ok: Optional[bool]) -> None:
        rows.append({"scenario": scenario, "target": target, "measured": measured, "bare": bare, "met": _met(ok)})

    for n, rate, limit in ((100, 10, 5.0), (1000, 20, 50.0)):
        s = _find(results, "latency", f"{n} receivers, {rate} msg/s")
        p99 = s["latency_all_ms"]["p99"] if s else None
        p50 = s["latency_all_ms"]["p50"] if s else None
        cpu = f"; server CPU {_fmt(s['server_cpu_pct'], '%')}" if s else ""
        bare = []
        for kind in ("sharon", "bare-asyncio", "bare-epoll"):
            f = _find(results, "fanout", f"{kind}, {n} receivers, {rate} msg/s")
            if f:
                name = "this server" if kind == "sharon" else kind.replace("-", " ")
                bare.append(f"{name} p99 {_fmt(f['latency_all_ms']['p99'])} ms")
        row(f"delivery latency, {n:,} receivers, {rate} msg/s", f"p99 ≤ {limit:g} ms",
            f"p50 {_fmt(p50)} / p99 {_fmt(p99)} ms{cpu}" if s else "—",
            ("same run, scenario 2: " + ", ".join(bare)) if bare else "—",
            None if p99 is None else p99 <= limit)

    fan = results.get("fanout") or {}
    dps = fan.get("deliveries_per_s") or {}
    sharon = (dps.get("sharon") or {}).get("1000")
    bare_a = (dps.get("bare-asyncio") or {}).get("1000")
    bare_e = (dps.get("bare-epoll") or {}).get("1000")
    ratio = sharon / bare_a if sharon and bare_a else None
    bare_txt = []
    if bare_a:
        bare_txt.append(f"{ratio:.0%} of bare asyncio ({_fmt(bare_a)}/s)")
    if bare_e and sharon:
        bare_txt.append(f"{sharon / bare_e:.0%} of bare epoll ({_fmt(bare_e)}/s)")
    row("deliveries/s at saturation, 1,000 receivers", "≥ 60 % of the bare stack, same run",
        f"{_fmt(sharon)} deliveries/s" if sharon else "—", "; ".join(bare_txt) or "—",
        None if ratio is None else ratio >= 0.60)

    w1 = _find(results, "sends", "10 senders, separate rooms, 1 in flight")
    wn = None
    for s in _steps(results, "sends"):
        if s.get("label", "").startswith("10 senders, separate rooms,") and s.get("window", 1) > 1:
            wn = s
    parts = []
    if w1:
        parts.append(f"{_fmt(w1['msgs_per_s'])} msg/s with 1 send in flight per sender")
    if wn:
        parts.append(f"{_fmt(wn['msgs_per_s'])} msg/s with {wn['window']} in flight")
    best = max([s["msgs_per_s"] or 0 for s in (w1, wn) if s], default=None)
    row("sends persisted and acked, 10 senders in 10 rooms", "≥ 5,000 msg/s", "; ".join(parts) or "—", "—",
        None if w1 is None else (w1["msgs_per_s"] or 0) >= 5000)
    del best

    hist = [s for s in _steps(results, "history")]
    if hist:
        small = [s for s in hist if s["events_in_room"] == min(h["events_in_room"] for h in hist)]
        large = [s for s in hist if s["events_in_room"] == max(h["events_in_room"] for h in hist)]

        def desc(ss: List[Dict[str, Any]]) -> str:
            return ", ".join(f"{s['where']} p50 {_fmt(s['latency_ms']['p50'])} / p99 {_fmt(s['latency_ms']['p99'])}"
                             for s in ss)

        n_small, n_large = small[0]["events_in_room"], large[0]["events_in_room"]
        worst = max(s["latency_ms"]["p99"] or 0 for s in small + large)
        row("history page of 100, at 5k and at 1M events", "p99 ≤ 2 ms, flat as the room grows",
            f"{n_small:,}: {desc(small)} ms; {n_large:,}: {desc(large)} ms", "—", worst <= 2.0)
    else:
        row("history page of 100, at 5k and at 1M events", "p99 ≤ 2 ms, flat as the room grows", "—", "—", None)

    idle = _steps(results, "idle")
    base = next((s for s in idle if s.get("connections") == 0), None)
    tenk = next((s for s in idle if s.get("connections") == 10_000), None)
    biggest = max(idle, key=lambda s: s.get("connections", 0)) if idle else None
    if base:
        big = tenk or biggest
        measured = f"{_fmt(base['server_rss_mib'])} MiB idle"
        if big and big is not base:
            measured += (f"; {_fmt(big['server_rss_mib'])} MiB with {big['connections']:,} connections "
                         f"({_fmt(big.get('per_connection_kib'))} KiB each)")
        ok = base["server_rss_mib"] <= 60 and (tenk is None or tenk["server_rss_mib"] <= 250)
        row("idle server memory / 10,000 idle authenticated connections", "≤ 60 MiB / ≤ 250 MiB", measured,
            "bare stack ~10 KB per connection", ok)
    else:
        row("idle server memory / 10,000 idle authenticated connections", "≤ 60 MiB / ≤ 250 MiB", "—", "—", None)

    st = _steps(results, "startup")
    empty = next((s for s in st if s["label"].startswith("empty database")), None)
    fresh = next((s for s in st if s["label"].startswith("fresh")), None)
    big = next((s for s in st if "event database" in s["label"]), None)
    if empty and big:
        e, b = empty["to_first_answer_s"]["median"], big["to_first_answer_s"]["median"]
        f = fresh["to_first_answer_s"]["median"] if fresh else None
        row("start-up to accepting connections, empty / 1M-event database", "≤ 0.5 s / ≤ 2 s",
            f"{_fmt(e)} s / {_fmt(b)} s ({big['events']:,} events); first start on a fresh directory {_fmt(f)} s",
            "—", e <= 0.5 and b <= 2.0)
    else:
        row("start-up to accepting connections, empty / 1M-event database", "≤ 0.5 s / ≤ 2 s", "—", "—", None)

    conn = [s for s in _steps(results, "connect") if "cold" in s.get("label", "")]
    if conn:
        times = sorted(s["elapsed_s"] for s in conn)
        med = times[len(times) // 2]
        failed = sum(sum(s["failed"].values()) for s in conn)
        warm = [s for s in _steps(results, "connect") if "warm" in s.get("label", "")]
        extra = f"; warm token cache {_fmt(warm[0]['elapsed_s'])} s" if warm else ""
        n = conn[0].get("connected", 0) + sum(conn[0]["failed"].values())
        row(f"{n:,} clients connect and authenticate", "≤ 5 s",
            f"{_fmt(med)} s ({_fmt(conn[0]['rate_per_s'])}/s, {failed} failed){extra}", "—",
            med <= 5.0 and failed == 0)
    else:
        row("10,000 clients connect and authenticate", "≤ 5 s", "—", "—", None)
    return rows


def _step_rows(name: str, steps: List[Dict[str, Any]]) -> List[str]:
    out = []
    for s in steps:
        cells = [s.get("label", "")]
        if name in ("latency", "fanout") or (name == "risk" and s.get("kind") == "deliveries"):
            la = s["latency_all_ms"]
            cells += [f"{_fmt(la['p50'])} / {_fmt(la['p95'])} / {_fmt(la['p99'])} ms",
                      f"{_fmt(s['msgs_per_s'])} msg/s, {_fmt(s['deliveries_per_s'])} deliveries/s"
                      + (f", {s['incomplete']} incomplete" if s.get("incomplete") else "")]
        elif name == "sends" or (name == "risk" and "ack_ms" in s):
            a = s["ack_ms"]
            cells += [f"ack {_fmt(a['p50'])} / {_fmt(a['p95'])} / {_fmt(a['p99'])} ms",
                      f"{_fmt(s['msgs_per_s'])} msg/s" + (f", errors {s['send_errors']}" if s["send_errors"] else "")]
        elif name == "history":
            la = s["latency_ms"]
            cells += [f"{_fmt(la['p50'])} / {_fmt(la['p95'])} / {_fmt(la['p99'])} ms", f"{la['n']} pages"]
        elif name == "idle":
            extra = f"{_fmt(s.get('per_connection_kib'))} KiB per connection" if s.get("connections") else ""
            if s.get("elapsed_s") is not None:
                extra += f"; connected in {_fmt(s['elapsed_s'])} s"
            cells += [f"RSS {_fmt(s['server_rss_mib'])} MiB", extra]
        elif name == "startup":
            cells += [f"{_fmt(s['to_first_answer_s']['median'])} s to the first answer",
                      f"listening logged at {_fmt(s['to_listening_log_s'])} s; runs {s['to_first_answer_s']['all']}"
                      + (f"; server CPU to the first answer {_fmt(s['server_cpu_s']['median'])} s"
                         if s.get("server_cpu_s") else "")]
        elif name == "connect":
            pc = s["per_client_ms"]
            cells += [f"{_fmt(s['elapsed_s'])} s, {_fmt(s['rate_per_s'])}/s",
                      f"per client p50 {_fmt(pc['p50'])} / p99 {_fmt(pc['p99'])} ms; failed {s['failed'] or 0}"]
        cpu = s.get("server_cpu_pct")
        cells += [_fmt(cpu, "%") if cpu is not None else "—",
                  _fmt(s.get("server_rss_peak_mib", s.get("server_rss_mib")), " MiB"),
                  _fmt(s.get("driver_cpu_pct"), "%") if s.get("driver_cpu_pct") is not None else "—"]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return out


def summary_markdown(results: Dict[str, Any], profile: str, date: str, info: Dict[str, Any],
                     elapsed_s: float) -> str:
    """The summary document: targets first, then every step."""
    lines = [f"# SHaRON benchmark summary — {date}, {profile} profile", "",
             f"Machine: {info.get('cpu')} ({info.get('cores')} cores), Python {info.get('python')}, "
             f"commit {info.get('commit')}, driver loop {info.get('driver_loop')}. Suite time {elapsed_s} s.", "",
             "## Targets", "",
             "| scenario | target | measured | vs the bare stack | verdict |", "|---|---|---|---|---|"]
    for r in targets(results):
        lines.append(f"| {r['scenario']} | {r['target']} | {r['measured']} | {r['bare']} | {r['met']} |")
    lines += ["", "## Every step", "",
              "Server CPU is the server process over the step (100 % = one core); RSS is its peak "
              "over the step; driver CPU is the load driver's own over the same command.", ""]
    heads = {
        "latency": ("delivery latency (send → all receivers) p50 / p95 / p99", "throughput"),
        "fanout": ("delivery latency p50 / p95 / p99", "throughput"),
        "sends": ("ack latency p50 / p95 / p99", "acked"),
        "history": ("round trip p50 / p95 / p99", "pages"),
        "idle": ("server memory", ""),
        "startup": ("median", "details"),
        "connect": ("all connected and authenticated", "details"),
        "risk": ("latency p50 / p95 / p99", "throughput"),
    }
    for name, result in results.items():
        lines += [f"### {name}", ""]
        if result.get("status") != "ok":
            lines += [f"Failed: `{result.get('error')}`", ""]
            continue
        a, b = heads.get(name, ("", ""))
        lines += [f"| step | {a} | {b} | server CPU | server RSS | driver CPU |", "|---|---|---|---|---|---|"]
        lines += _step_rows(name, result.get("steps") or [])
        if name == "fanout" and result.get("ratio"):
            lines += ["", "Ratio of the real server's deliveries/s to the bare stack's: " +
                      ", ".join(f"{k}: {v:.0%}" for k, v in result["ratio"].items()) + "."]
        if name == "risk" and result.get("ratio_on_off"):
            lines += ["", "Risk detection on ÷ off (medians; target ≥ 0.90 for deliveries): " +
                      ", ".join(f"{k}: {v:.3f}" for k, v in result["ratio_on_off"].items()) + "."]
        if name == "history" and result.get("generate_s") is not None:
            lines += ["", f"{result['events_total']:,} events generated through the storage layer in "
                      f"{result['generate_s']} s."]
        lines.append("")
    return "\n".join(lines) + "\n"
