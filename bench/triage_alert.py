"""``python -m bench.triage_alert [N]``: how long a high-risk item takes to reach an on-duty
moderator's WebSocket as a live ``alert`` (not part of the test suite).

Starts a real server (SQLite, fresh data directory), makes a service with one moderator on
duty and two members, then measures, N times each, on the client side:

- **send -> alert**: a member sends a risky message (the risk feature flags it; the triage
  feature queues it and pushes the alert), until the moderator's connection has the frame;
- **report -> alert**: a member reports a message as risk to self, until the alert arrives.

Prints the median, p95 and maximum in milliseconds.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from bench.procs import ServerProc
from clients.client import SharonClient
from clients.runtime import install_reactor, run

PASSWORD = "correct horse battery"


async def _user(url: str, name: str) -> SharonClient:
    client = await SharonClient.connect(url)
    await client.register(name, PASSWORD)
    return client


async def _alert(client: SharonClient) -> float:
    while True:
        frame = await client.next_frame(timeout_s=10)
        if frame.get("op") == "alert":
            return time.perf_counter()


def _summary(name: str, samples: List[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return (f"{name}: n={len(samples)} median={statistics.median(ordered):.2f} ms "
            f"p95={p95:.2f} ms max={ordered[-1]:.2f} ms")


async def measure(server: ServerProc, data_dir: Path, n: int) -> List[str]:
    url = f"ws://127.0.0.1:{server.port}/ws"
    admin = await _user(url, "bench-heron")
    out = subprocess.run([sys.executable, "-m", "sharon_server", "admin", "--data-dir", str(data_dir),
                          "grant", admin.pseudonym], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    service = (await admin.request("create_service", name="Bench"))["service_id"]
    mod, alice, bob = (await _user(url, "bench-owl"), await _user(url, "bench-alice"),
                       await _user(url, "bench-bob"))
    await admin.request("service_add_member", service_id=service, user_id=mod.user_id, role="moderator")
    for m in (alice, bob):
        await admin.request("service_add_member", service_id=service, user_id=m.user_id)
    room = (await admin.request("create_room", kind="chat", name="Bench", public=True,
                                service_id=service))["room_id"]
    for c in (mod, alice, bob):
        await c.join(room)
        await c.sync()
    await mod.request("duty", service_id=service, on=True)
    sends: List[float] = []
    reports: List[float] = []
    for i in range(n):
        waiter = asyncio.ensure_future(_alert(mod))
        t0 = time.perf_counter()
        await alice.request("send", room_id=room, txn_id=f"b{i}", body=f"I am going to kill myself {i}")
        sends.append((await waiter - t0) * 1000)
        calm = (await alice.request("send", room_id=room, txn_id=f"c{i}", body=f"calm message {i}"))["event_id"]
        waiter = asyncio.ensure_future(_alert(mod))
        t0 = time.perf_counter()
        await bob.request("report", room_id=room, event_id=calm, category="risk_to_self")
        reports.append((await waiter - t0) * 1000)
        while not alice._frames.empty():  # signposting pushes to the author
            alice._frames.get_nowait()
    for c in (admin, mod, alice, bob):
        await c.close()
    return [_summary("send -> alert", sends), _summary("report -> alert", reports)]


def main(argv: List[str]) -> int:
    n = int(argv[0]) if argv else 50
    install_reactor()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "sharon-data"
        server = ServerProc("sharon", data_dir, env={"SHARON_TRIAGE_SCAN_S": "0"}).start()
        try:
            lines = run(measure(server, data_dir, n), 600)
        finally:
            server.stop()
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
