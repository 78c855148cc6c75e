"""Issue #4: the peer-support features must not slow plain messaging down.

Timing cannot guard that here (the same commit's send rate swings by 30 % on a shared
two-core machine), so this counts: ``bench.send_calls`` starts the real server twice, with
the room core alone and with the issue-4 features (services, DMs, forums/walls/blogs,
social, media), sends plain messages over a real WebSocket with one in flight, and counts
the function calls the reactor thread makes per message under cProfile. A feature that
starts doing real work on every plain message shows up as calls, by name, and fails this.
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

BUDGET = 1.10
"""Calls per plain message with the issue-4 features, at most this multiple of the room
core's. Measured: 1.07 (534 against 498 calls). Before their hooks were trimmed it was
1.11 (798 against 721), when the core itself made more calls (decision 0019,
docs/performance.md). What remains is about 36 calls: the search document, the mention and
tag checks, the service's character limit and the unread counter."""


def test_issue4_features_add_little_reactor_work_to_a_plain_message(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "bench.send_calls", "--messages", "300", "--warmup", "60",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    [path] = tmp_path.glob("*-send-calls.json")
    result = json.loads(path.read_text())
    core, features = result["sets"]
    assert core == " " and "social" in features and "spaces" in features
    [base] = result["runs"][core]
    [with_features] = result["runs"][features]
    assert base["messages"] == with_features["messages"] == 300
    # the core's own path is a few hundred calls per message: a broken profile reads ~0
    assert base["calls_per_msg"] > 100
    ratio = with_features["calls_per_msg"] / base["calls_per_msg"]
    extra = "\n".join(f"{d['function']}: {d[core]} -> {d[features]}" for d in result["differences"][:15])
    assert ratio <= BUDGET, f"issue-4 features cost {ratio:.3f}x the core's calls per message:\n{extra}"
    # the features' hooks do run on these messages (search documents, unread counts)
    names = {d["function"] for d in result["differences"]}
    assert any("features/social.py" in n for n in names), names
