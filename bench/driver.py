"""The load driver: a separate process of raw asyncio WebSocket clients speaking our protocol.

It is controlled by the runner over stdin/stdout, one JSON command per line and one JSON
reply per line (progress goes to stderr). Every reply carries the driver's own CPU time
and wall time for that command (``resource.getrusage``), so each figure says whether the
driver or the server was the bottleneck.

Clients live in named groups that persist across commands (connect a room's receivers once,
then run several load steps on them). Per frame the driver does as little as it can: the
frame header is parsed in place, an event push is recognised by its msgpack prefix and
mapped to its message by a dict lookup of its bytes (every receiver gets the same prepared
bytes, so only the first copy is decoded), and one clock reading is shared by all frames of
one socket read. Latency is measured inside this one process with one monotonic clock:
the send time is recorded when the ``send`` frame is written, the receive time when the
frame is read, and the message's id travels in its body.

Commands (``{"cmd": NAME, ...}``): connect, create_room, join, sync, latency, sends,
history, close, stats, quit. See the functions ``cmd_*`` below.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import msgpack

from bench.wsclient import WSConn, connect as ws_connect

__all__ = ["main"]

SUBPROTOCOL = "sharon.v1.msgpack"
EVENT_PREFIX = b"\x82\xa2op\xa5event"
_clock = time.perf_counter
_packb = msgpack.packb
_unpackb = msgpack.unpackb


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"    [driver] {msg}", file=sys.stderr, flush=True)


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentiles(values: List[float], scale: float = 1000.0) -> Dict[str, Optional[float]]:
    """p50/p95/p99/max (nearest rank) of ``values`` times ``scale`` (seconds → ms)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    s = sorted(values)
    n = len(s)

    def pick(q: float) -> float:
        return round(s[min(n - 1, max(0, int(q * n + 0.999999) - 1))] * scale, 3)

    return {"n": n, "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99),
            "max": round(s[-1] * scale, 3), "mean": round(sum(s) / n * scale, 3)}


class Client:
    """One connection and its account; replies are routed to callbacks by request id."""

    __slots__ = ("conn", "token", "user_id", "pending", "next_id")

    def __init__(self, conn: WSConn, token: str) -> None:
        self.conn = conn
        self.token = token
        self.user_id: Optional[str] = None
        self.pending: Dict[int, Callable[[Dict[str, Any], float], None]] = {}
        self.next_id = 1

    def request(self, frame: Dict[str, Any], callback: Callable[[Dict[str, Any], float], None]) -> int:
        """Send a request; ``callback(reply, now)`` runs when its reply arrives."""
        rid = self.next_id
        self.next_id = rid + 1 if rid < 2**31 - 2 else 1
        frame["id"] = rid
        self.pending[rid] = callback
        self.conn.send_binary(_packb(frame))
        return rid

    def call(self, frame: Dict[str, Any]) -> "asyncio.Future[Dict[str, Any]]":
        """Send a request and return a future for its reply."""
        fut = asyncio.get_running_loop().create_future()

        def done(reply: Dict[str, Any], _now: float) -> None:
            if not fut.done():
                fut.set_result(reply)

        self.request(frame, done)
        return fut


class Tracker:
    """Arrivals of the messages of one load step, keyed by the message number in the body."""

    def __init__(self, marker: str, receivers: int) -> None:
        self.marker = marker
        self.receivers = receivers
        self.sent: Dict[int, List[float]] = {}  # seq -> [t_send, remaining, t_first, t_last]
        self.cache: Dict[bytes, Any] = {}
        self.deliveries = 0
        self.complete = 0

    def on_event(self, payload: bytes, now: float) -> None:
        rec = self.cache.get(payload)
        if rec is None:
            rec = self._lookup(payload)
            self.cache[payload] = rec
        if rec is False:
            return
        self.deliveries += 1
        rec[1] -= 1
        rec[3] = now
        if rec[2] == 0.0:
            rec[2] = now
        if rec[1] == 0:
            self.complete += 1
            self.cache.pop(payload, None)

    def _lookup(self, payload: bytes) -> Any:
        try:
            body = _unpackb(payload)["event"]["content"]["body"]
        except (KeyError, TypeError, ValueError):
            return False
        if not isinstance(body, str) or not body.startswith(self.marker):
            return False
        seq = int(body[len(self.marker):body.index(" ", len(self.marker))])
        return self.sent.get(seq, False)


class Driver:
    """All groups of clients and the load step currently running."""

    def __init__(self) -> None:
        self.groups: Dict[str, List[Client]] = {}
        self.tracker: Optional[Tracker] = None
        self.stray_events = 0
        self.errors: Dict[str, int] = {}
        self.run_nonce = os.urandom(3).hex()
        self.step = 0

    # -- frames ----------------------------------------------------------------------
    def on_frame(self, conn: WSConn, payload: bytes, now: float) -> None:
        if payload.startswith(EVENT_PREFIX):
            tracker = self.tracker
            if tracker is not None:
                tracker.on_event(payload, now)
            else:
                self.stray_events += 1
            return
        try:
            reply = _unpackb(payload)
        except ValueError:
            self._count("undecodable")
            return
        client: Client = conn.tag
        callback = client.pending.pop(reply.get("id"), None) if client is not None else None
        if callback is not None:
            callback(reply, now)
        elif reply.get("op") == "event":  # an event frame with other key order (bare server)
            if self.tracker is not None:
                self.tracker.on_event(payload, now)
        else:
            self._count("unsolicited_" + str(reply.get("op")))

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def group(self, name: str) -> List[Client]:
        try:
            return self.groups[name]
        except KeyError:
            raise ValueError(f"no group {name!r}") from None

    # -- commands ---------------------------------------------------------------------
    async def cmd_connect(self, host: str, port: int, group: str, tokens: Optional[List[str]] = None,
                          tokens_file: Optional[str] = None, start: int = 0, count: Optional[int] = None,
                          concurrency: int = 50, auth: bool = True, join: Optional[str] = None,
                          sync: bool = False, progress_every: int = 0) -> Dict[str, Any]:
        """Open ``count`` connections, each ``auth`` with its token (then ``join``, ``sync``)."""
        if tokens is None:
            with open(tokens_file or "", encoding="utf-8") as fh:
                tokens = json.load(fh)["tokens"]
        tokens = tokens[start:start + count if count is not None else None]
        clients = self.groups.setdefault(group, [])
        slots: List[Optional[Client]] = [None] * len(tokens)  # keep the group in token order
        sem = asyncio.Semaphore(concurrency)
        times: List[float] = []
        failures: Dict[str, int] = {}
        done = 0

        async def one(index: int, token: str) -> None:
            nonlocal done
            async with sem:
                t0 = _clock()
                try:
                    conn = await ws_connect(host, port, SUBPROTOCOL, self.on_frame, timeout_s=60)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    key = type(exc).__name__
                    failures[key] = failures.get(key, 0) + 1
                    return
                client = Client(conn, token)
                conn.tag = client
                if auth:
                    reply = await client.call({"op": "auth", "token": token})
                    if reply.get("op") != "ok":
                        failures["auth_" + str(reply.get("code"))] = failures.get("auth_" + str(reply.get("code")), 0) + 1
                        conn.abort()
                        return
                    client.user_id = reply.get("user_id")
                if join:
                    reply = await client.call({"op": "join", "room_id": join})
                    if reply.get("op") != "ok":
                        failures["join_" + str(reply.get("code"))] = failures.get("join_" + str(reply.get("code")), 0) + 1
                if sync:
                    await client.call({"op": "sync"})
                times.append(_clock() - t0)
                slots[index] = client
                done += 1
                if progress_every and done % progress_every == 0:
                    log(f"{group}: {done}/{len(tokens)} connected")

        t0 = _clock()
        await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))
        elapsed = _clock() - t0
        clients.extend(c for c in slots if c is not None)
        return {"connected": len(times), "failed": failures, "elapsed_s": round(elapsed, 3),
                "rate_per_s": round(len(times) / elapsed, 1) if elapsed > 0 else None,
                "per_client_ms": percentiles(times), "group_size": len(clients)}

    async def cmd_create_room(self, group: str, index: int = 0, name: str = "bench",
                              public: bool = True) -> Dict[str, Any]:
        """The client ``index`` of ``group`` creates a room; returns its room_id."""
        client = self.group(group)[index]
        reply = await client.call({"op": "create_room", "kind": "chat", "name": name, "public": public})
        if reply.get("op") != "ok":
            raise RuntimeError(f"create_room failed: {reply}")
        return {"room_id": reply["room_id"], "pos": reply.get("pos")}

    async def _each(self, clients: List[Client], make: Callable[[Client], Dict[str, Any]],
                    concurrency: int) -> Dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        errors: Dict[str, int] = {}
        replies: List[Dict[str, Any]] = []

        async def one(client: Client) -> None:
            async with sem:
                reply = await client.call(make(client))
                replies.append(reply)
                if reply.get("op") != "ok":
                    errors[str(reply.get("code"))] = errors.get(str(reply.get("code")), 0) + 1

        t0 = _clock()
        await asyncio.gather(*(one(c) for c in clients))
        return {"n": len(clients), "errors": errors, "elapsed_s": round(_clock() - t0, 3), "replies": replies}

    async def cmd_join(self, group: str, room_id: str, concurrency: int = 200,
                       start: int = 0, count: Optional[int] = None) -> Dict[str, Any]:
        """Every client of the group joins ``room_id``."""
        clients = self.group(group)[start:start + count if count is not None else None]
        out = await self._each(clients, lambda c: {"op": "join", "room_id": room_id}, concurrency)
        out.pop("replies")
        return out

    async def cmd_sync(self, group: str, concurrency: int = 500) -> Dict[str, Any]:
        """Every client of the group goes live (``sync`` without ``since``)."""
        out = await self._each(self.group(group), lambda c: {"op": "sync"}, concurrency)
        out.pop("replies")
        return out

    async def cmd_latency(self, senders: str, rooms: List[str], receivers: int, duration_s: float,
                          rate: Optional[float] = None, window: int = 1, warmup_s: float = 0.5,
                          body_chars: int = 120, grace_s: float = 5.0,
                          pad_text: Optional[str] = None) -> Dict[str, Any]:
        """Send messages and time them to their ``receivers`` deliveries each.

        ``pad_text`` (repeated to fill the body) replaces the default "xxx..." padding, e.g.
        with ordinary prose for the risk-detection scenario.

        ``rate`` (msg/s, open loop, evenly spaced; sends are not held back by acks) or, when
        ``rate`` is None, saturation: each sender keeps ``window`` sends in flight. Sender i
        uses ``rooms[i % len(rooms)]``. Messages sent during ``warmup_s`` are not counted.
        ``msgs_per_s`` is acknowledged sends per second of the measured window;
        ``deliveries_per_s`` is deliveries that arrived during that window, per second.
        """
        self.step += 1
        marker = f"b{self.run_nonce}.{self.step}:"
        tracker = Tracker(marker, receivers)
        pad_len = max(0, body_chars - len(marker) - 12)
        pad = (pad_text * (pad_len // max(1, len(pad_text)) + 1))[:pad_len] if pad_text else "x" * pad_len
        send_clients = self.group(senders)
        acks: List[float] = []
        errors: Dict[str, int] = {}
        seq_box = [0]
        stop_at = [0.0]
        measure_from = [0.0]
        outstanding = [0]

        def send_one(i: int) -> None:
            seq = seq_box[0] = seq_box[0] + 1
            client = send_clients[i % len(send_clients)]
            room = rooms[i % len(rooms)]
            now = _clock()
            rec = [now, receivers, 0.0, 0.0]
            if receivers:
                tracker.sent[seq] = rec
            measured = now >= measure_from[0]
            outstanding[0] += 1

            def acked(reply: Dict[str, Any], t: float) -> None:
                outstanding[0] -= 1
                if reply.get("op") != "ok":
                    code = str(reply.get("code"))
                    errors[code] = errors.get(code, 0) + 1
                    tracker.sent.pop(seq, None)
                elif measured:
                    acks.append(t - now)
                if rate is None and t < stop_at[0]:
                    send_one(i)

            client.request({"op": "send", "room_id": room, "txn_id": f"{marker}{seq}",
                            "body": f"{marker}{seq} {pad}"}, acked)
            if not measured:
                rec.append(0.0)  # marks warm-up messages

        self.tracker = tracker
        cpu0 = _cpu()
        t0 = _clock()
        measure_from[0] = t0 + warmup_s
        stop_at[0] = t0 + warmup_s + duration_s
        marks: Dict[str, Any] = {}

        async def mark_arrivals() -> None:
            # Deliveries that ARRIVE during the measured window: the server's real delivery
            # rate, even when it falls behind and a backlog builds up inside it.
            await asyncio.sleep(max(0.0, measure_from[0] - _clock()))
            marks["from"] = (tracker.deliveries, _clock())
            await asyncio.sleep(max(0.0, stop_at[0] - _clock()))
            marks["to"] = (tracker.deliveries, _clock())

        marker_task = asyncio.ensure_future(mark_arrivals())
        try:
            if rate is None:
                for i in range(len(send_clients) * window):
                    send_one(i)
                while _clock() < stop_at[0]:
                    await asyncio.sleep(0.05)
            else:
                interval = 1.0 / rate
                i = 0
                while True:
                    now = _clock()
                    due = t0 + i * interval
                    if due >= stop_at[0]:
                        break
                    if due > now:
                        await asyncio.sleep(due - now)
                    send_one(i)
                    i += 1
            await marker_task
            measure_end = _clock()
            # Deliveries counted over the measured window (warm-up messages excluded).
            measured_recs = [r for r in tracker.sent.values() if len(r) == 4]
            grace_end = _clock() + grace_s
            while _clock() < grace_end and (outstanding[0] or any(r[1] > 0 for r in measured_recs)):
                await asyncio.sleep(0.02)
        finally:
            self.tracker = None
            marker_task.cancel()
        wall = _clock() - t0
        cpu = _cpu() - cpu0
        window_s = measure_end - measure_from[0]
        lat_all = [r[3] - r[0] for r in measured_recs if r[1] == 0]
        lat_first = [r[2] - r[0] for r in measured_recs if r[2] > 0.0]
        incomplete = sum(1 for r in measured_recs if r[1] > 0)
        (d0, m0), (d1, m1) = marks["from"], marks["to"]
        arrival_rate = (d1 - d0) / (m1 - m0) if m1 > m0 else None
        return {
            "mode": "fixed" if rate else "saturation", "rate": rate, "window": window,
            "senders": len(send_clients), "rooms": len(rooms), "receivers": receivers,
            "sent": seq_box[0], "measured_messages": len(measured_recs), "incomplete": incomplete,
            "send_errors": errors, "measured_window_s": round(window_s, 3),
            "msgs_per_s": round(len(acks) / window_s, 1) if window_s > 0 else None,
            "deliveries_per_s": None if arrival_rate is None else round(arrival_rate, 1),
            "deliveries_total": tracker.deliveries,
            "latency_all_ms": percentiles(lat_all), "latency_first_ms": percentiles(lat_first),
            "ack_ms": percentiles(acks),
            "driver_cpu_pct_sending_window": round(100 * cpu / wall, 1) if wall > 0 else None,
        }

    async def cmd_history(self, group: str, room_id: str, requests: int, limit: int = 100,
                          from_pos: Optional[int] = None, direction: str = "b",
                          max_s: float = 30.0) -> Dict[str, Any]:
        """``requests`` sequential history requests from client 0 of the group; times each."""
        client = self.group(group)[0]
        times: List[float] = []
        sizes: List[int] = []
        errors: Dict[str, int] = {}
        t_end = _clock() + max_s
        frame: Dict[str, Any] = {"op": "history", "room_id": room_id, "limit": limit, "dir": direction}
        if from_pos is not None:
            frame["from"] = from_pos
        for _ in range(requests):
            t0 = _clock()
            reply = await client.call(dict(frame))
            t1 = _clock()
            if reply.get("op") != "ok":
                errors[str(reply.get("code"))] = errors.get(str(reply.get("code")), 0) + 1
            else:
                times.append(t1 - t0)
                sizes.append(len(reply["events"]))
            if t1 > t_end:
                break
        return {"requests": len(times), "errors": errors, "latency_ms": percentiles(times),
                "events_per_page": (min(sizes), max(sizes)) if sizes else None}

    async def cmd_close(self, group: str, wait_s: float = 10.0) -> Dict[str, Any]:
        """Close every connection of the group (close handshake, then wait for the TCP close)."""
        clients = self.groups.pop(group, [])
        for c in clients:
            c.conn.close()
        pending = [c.conn.closed for c in clients if not c.conn.closed.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=wait_s)
            for c in clients:
                if not c.conn.closed.done():
                    c.conn.abort()
        return {"closed": len(clients)}

    async def cmd_stats(self) -> Dict[str, Any]:
        """Group sizes, stray events and unexpected frames."""
        return {"groups": {k: len(v) for k, v in self.groups.items()}, "stray_events": self.stray_events,
                "errors": dict(self.errors)}


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def serve(reader: asyncio.StreamReader, write: Callable[[str], None]) -> None:
    """Read commands until ``quit`` or EOF; answer each with one JSON line."""
    driver = Driver()
    while True:
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        if cmd == "quit":
            write(json.dumps({"ok": True, "result": {}}))
            break
        cpu0, t0 = _cpu(), _clock()
        try:
            result = await getattr(driver, "cmd_" + cmd)(**msg)
            out = {"ok": True, "result": result}
        except Exception as exc:  # noqa: BLE001 - reported to the runner
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        wall = _clock() - t0
        cpu = _cpu() - cpu0
        out.update(wall_s=round(wall, 3), driver_cpu_s=round(cpu, 3),
                   driver_cpu_pct=round(100 * cpu / wall, 1) if wall > 0 else None)
        write(json.dumps(out))
    for name in list(driver.groups):
        await driver.cmd_close(name, wait_s=2.0)


async def _amain(loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout

    def write(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    write(json.dumps({"ready": True, "loop": loop_name, "pid": os.getpid(), "nofile": raise_nofile()}))
    await serve(reader, write)


def main() -> None:
    """Entry point: ``python -m bench.driver [--no-uvloop]``."""
    use_uvloop = "--no-uvloop" not in sys.argv
    loop_name = "asyncio"
    if use_uvloop:
        try:
            import uvloop

            loop_name = "uvloop"
            uvloop.run(_amain(loop_name))
            return
        except ImportError:
            pass
    asyncio.run(_amain(loop_name))


if __name__ == "__main__":
    main()
