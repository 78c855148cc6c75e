"""A minimal WebSocket client on a raw asyncio Protocol: the load driver's connections.

Only what the driver needs, kept cheap per frame: the opening handshake with one
subprotocol, masked client frames (RFC 6455 §5.3, a random key per connection), unmasked
server frames parsed straight out of the receive buffer, ping → pong, and the close
handshake. Server frames are never fragmented by autobahn's defaults, but continuation
frames are reassembled anyway.

Each received data message goes to ``on_message(conn, payload, now)``; ``now`` is
``time.perf_counter()`` taken once per ``data_received`` call (every frame in one read
arrived at the same moment).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from typing import Any, Callable, Optional

__all__ = ["WSConn", "connect", "HandshakeError"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_clock = time.perf_counter


class HandshakeError(Exception):
    """The server refused or botched the opening handshake."""


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    k = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def _header(opcode: int, n: int, key: bytes) -> bytes:
    if n < 126:
        return bytes((0x80 | opcode, 0x80 | n)) + key
    if n < 65536:
        return bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big") + key
    return bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big") + key


class WSConn(asyncio.Protocol):
    """One client connection. ``opened`` resolves after the 101; ``closed`` when the socket goes."""

    __slots__ = ("on_message", "transport", "opened", "closed", "_hs", "_key", "_buf", "_frag",
                 "_accept", "_request", "state", "tag")

    def __init__(self, host: str, port: int, path: str, subprotocol: str,
                 on_message: Callable[["WSConn", bytes, float], None]) -> None:
        loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.transport: Any = None
        self.opened: "asyncio.Future[None]" = loop.create_future()
        self.closed: "asyncio.Future[None]" = loop.create_future()
        self._hs = True
        self._key = os.urandom(4)
        self._buf = b""
        self._frag: Optional[bytearray] = None
        nonce = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(nonce + _GUID).digest())
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
        ).encode("ascii")
        self.state = "connecting"
        self.tag: Any = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.state = "closed"
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection lost during handshake: {exc!r}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if self._hs:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buf = data
                return
            head, data = data[:end], data[end + 4:]
            self._hs = False
            lines = head.split(b"\r\n")
            if not lines[0].startswith(b"HTTP/1.1 101") or self._accept not in head:
                self.opened.set_exception(HandshakeError(lines[0].decode("latin-1")))
                self.transport.close()
                return
            self.state = "open"
            self.opened.set_result(None)
            if not data:
                return
        now = _clock()
        i = 0
        n = len(data)
        on_message = self.on_message
        while n - i >= 2:
            b0 = data[i]
            ln = data[i + 1] & 0x7F
            if ln < 126:
                hl = 2
            elif ln == 126:
                if n - i < 4:
                    break
                ln = (data[i + 2] << 8) | data[i + 3]
                hl = 4
            else:
                if n - i < 10:
                    break
                ln = int.from_bytes(data[i + 2:i + 10], "big")
                hl = 10
            end = i + hl + ln
            if end > n:
                break
            payload = data[i + hl:end]
            i = end
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode in (1, 2):
                on_message(self, payload, now)
            elif opcode == 0 or not b0 & 0x80:
                self._fragment(b0, opcode, payload, now)
            elif opcode == 9:
                self._send(0xA, payload)
            elif opcode == 8:
                if self.state == "open":
                    self._send(0x8, payload[:2])
                self.state = "closing"
                self.transport.close()
                return
        if i < n:
            self._buf = data[i:]

    def _fragment(self, b0: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode != 0:
            self._frag = bytearray(payload)
        elif self._frag is not None:
            self._frag += payload
        if b0 & 0x80 and self._frag is not None:
            whole, self._frag = bytes(self._frag), None
            self.on_message(self, whole, now)

    # -- sending ------------------------------------------------------------------------
    def _send(self, opcode: int, payload: bytes) -> None:
        key = os.urandom(4)
        self.transport.write(_header(opcode, len(payload), key) + _mask(payload, key))

    def send_binary(self, payload: bytes) -> None:
        """Send one binary message (no-op unless open)."""
        if self.state == "open":
            key = self._key
            self.transport.write(_header(2, len(payload), key) + _mask(payload, key))

    def close(self, code: int = 1000) -> None:
        """Start the close handshake; the server closes the TCP connection."""
        if self.state == "open":
            self._send(0x8, code.to_bytes(2, "big"))
            self.state = "closing"
        elif self.transport is not None and self.state == "connecting":
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self.transport is not None:
            self.transport.abort()


async def connect(host: str, port: int, subprotocol: str,
                  on_message: Callable[[WSConn, bytes, float], None], path: str = "/ws",
                  timeout_s: float = 30.0) -> WSConn:
    """Open one WebSocket connection and wait for the handshake to complete."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: WSConn(host, port, path, subprotocol, on_message), host, port),
        timeout_s)
    await asyncio.wait_for(asyncio.shield(conn.opened), timeout_s)
    return conn
