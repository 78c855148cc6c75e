"""Every benchmark scenario runs end to end at tiny sizes, so bench/ cannot rot.

``python -m bench --smoke`` starts the real server (and the bare autobahn baseline) as
processes and drives them from the load driver process, exactly as the real suite does.
Nothing here is timed or compared with a target: the test checks only that every scenario
produced well-formed results with the expected keys, and that the driver really measured
something (messages were delivered, pages were read, clients connected).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["startup", "history", "latency", "fanout", "sends", "idle", "connect"]
SERVER_KEYS = {"server_cpu_pct", "server_rss_mib", "server_rss_peak_mib", "driver_cpu_pct"}
LATENCY_KEYS = {"label", "receivers", "msgs_per_s", "deliveries_per_s", "latency_all_ms", "ack_ms",
                "incomplete", "send_errors"} | SERVER_KEYS
PCT_KEYS = {"n", "p50", "p95", "p99", "max"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = {}
    for name in SCENARIOS:
        [path] = out.glob(f"*-smoke-{name}.json")
        results[name] = json.loads(path.read_text())
    [summary] = out.glob("*-smoke-summary.md")
    return results, summary.read_text(), proc.stdout


def _check_pct(p):
    assert PCT_KEYS <= set(p), p
    assert p["n"] > 0 and p["p50"] is not None and p["p50"] <= p["p99"] <= p["max"]


def test_every_scenario_ran_and_carries_its_machine_and_sizes(smoke):
    results, _, _ = smoke
    for name in SCENARIOS:
        r = results[name]
        assert r["status"] == "ok", (name, r.get("error"))
        assert r["scenario"] == name and r["profile"] == "smoke"
        assert r["steps"], name
        assert {"cpu", "cores", "python", "commit"} <= set(r["machine"])


def test_latency_and_fanout_steps_measure_real_deliveries(smoke):
    results, _, _ = smoke
    for name in ("latency", "fanout"):
        for step in results[name]["steps"]:
            assert LATENCY_KEYS <= set(step), (name, set(step) ^ LATENCY_KEYS)
            assert step["send_errors"] == {} and step["incomplete"] == 0, step
            _check_pct(step["latency_all_ms"])
            assert step["deliveries_per_s"] > 0
    modes = {s["mode"] for s in results["latency"]["steps"]}
    assert modes == {"fixed", "saturation"}
    fan = results["fanout"]
    assert set(fan["deliveries_per_s"]) == {"sharon", "bare-asyncio"}
    assert fan["ratio"] and all(v > 0 for v in fan["ratio"].values())


def test_sends_history_idle_startup_connect_steps(smoke):
    results, _, _ = smoke
    for step in results["sends"]["steps"]:
        assert SERVER_KEYS <= set(step)
        assert step["send_errors"] == {} and step["msgs_per_s"] > 0
        _check_pct(step["ack_ms"])
    layouts = {s["layout"] for s in results["sends"]["steps"]}
    assert layouts == {"one room", "separate rooms"}
    for step in results["history"]["steps"]:
        assert SERVER_KEYS <= set(step) and step["errors"] == {}
        _check_pct(step["latency_ms"])
        assert step["events_per_page"][1] == 100
    assert {s["where"] for s in results["history"]["steps"]} == {"end", "middle"}
    idle = results["idle"]["steps"]
    assert idle[0]["connections"] == 0 and idle[0]["server_rss_mib"] > 0
    assert [s["connections"] for s in idle[1:]] == [5, 10]
    assert all(s["failed"] == {} for s in idle[1:])
    labels = [s["label"] for s in results["startup"]["steps"]]
    assert len(labels) == 3 and "event database" in labels[2]
    for step in results["startup"]["steps"]:
        assert step["to_first_answer_s"]["median"] > 0
    for step in results["connect"]["steps"]:
        assert step["connected"] == 10 and step["failed"] == {}
        _check_pct(step["per_client_ms"])


def test_summary_has_a_row_for_every_target(smoke):
    _, summary, stdout = smoke
    assert "## Targets" in summary and summary in stdout
    for target in ("p99 ≤ 5 ms", "p99 ≤ 50 ms", "≥ 60 % of the bare stack", "≥ 5,000 msg/s",
                   "p99 ≤ 2 ms", "≤ 60 MiB / ≤ 250 MiB", "≤ 0.5 s / ≤ 2 s", "≤ 5 s"):
        assert target in summary, target
    for name in SCENARIOS:
        assert f"### {name}" in summary
