"""The SHaRON client library: one WebSocket connection, requests as coroutines, live events in a queue.

Built on autobahn's Twisted WebSocket client running on Twisted's asyncio reactor
(``clients.runtime``); everything public is an asyncio coroutine awaited on that loop::

    client = await SharonClient.connect("ws://127.0.0.1:8448/ws")
    await client.login("quiet-heron", "correct horse")
    await client.sync()
    event = await client.next_event(timeout_s=5.0)
    await client.close()

The wire protocol is docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Callable, Dict, List, Optional

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS

from clients.runtime import install_reactor
from protocol.errors import ERROR_CODES, SharonError
from protocol.frames import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, codec_for

__all__ = ["SharonClient", "SUBPROTOCOLS", "MAX_QUEUED_EVENTS", "MAX_INCOMING_BYTES", "error_from_reply"]

log = logging.getLogger(__name__)

SUBPROTOCOLS: Dict[str, str] = {"msgpack": SUBPROTOCOL_MSGPACK, "json": SUBPROTOCOL_JSON}
"""Encoding name (the ``encoding`` argument of ``connect``) to WebSocket subprotocol."""

MAX_QUEUED_EVENTS = 10_000
"""Live events held for ``next_event``; one more closes the connection (never drops silently)."""

MAX_INCOMING_BYTES = 16 * 1024 * 1024
"""Largest frame accepted from the server, in bytes: a full history page of large events fits."""

_MAX_REQUEST_ID = 2**31 - 1
_MAX_ABANDONED = 1000
_CLOSED = object()  # queue sentinel: the connection is gone


def error_from_reply(reply: Dict[str, Any]) -> SharonError:
    """The exception for an ``error`` frame: the class registered for its code, else SharonError.

    The instance carries ``code``, ``reason`` and ``field`` exactly as the server sent them.
    """
    code = reply.get("code")
    cls = ERROR_CODES.get(code, SharonError) if isinstance(code, str) else SharonError
    reason = reply.get("reason")
    field = reply.get("field")
    exc = cls(reason if isinstance(reason, str) else str(code), field if isinstance(field, str) else None)
    if isinstance(code, str) and exc.code != code:
        exc.code = code  # an unknown code keeps its name rather than becoming "internal"
    return exc


class _Protocol(WebSocketClientProtocol):
    """Forwards autobahn callbacks to the owning SharonClient."""

    def onConnect(self, response: Any) -> None:
        client: SharonClient = self.factory.client
        if response.protocol != client.subprotocol:
            client._refusal = (
                f"server did not accept subprotocol {client.subprotocol!r} "
                f"(it selected {response.protocol!r})"
            )
            raise ConnectionError(client._refusal)

    def onOpen(self) -> None:
        self.factory.client._on_open(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._on_message(payload, isBinary)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        detail = reason or getattr(self, "wasNotCleanReason", None)
        self.factory.client._on_close(code, detail)


class _Factory(WebSocketClientFactory):
    """Client factory that reports TCP-level connection failures to its SharonClient."""

    protocol = _Protocol

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.client._on_connect_failed(reason.getErrorMessage())


class SharonClient:
    """One authenticated-or-not WebSocket session with a SHaRON server.

    After ``register``, ``login`` or ``auth`` the attributes ``user_id``, ``pseudonym``,
    ``device_id`` and ``token`` describe the session. ``last_pos`` is the highest stream
    position received (pushed events, queued or not, and ``sync`` replies): after draining
    ``next_event`` to the ConnectionError, pass it to ``sync(since=...)`` on a new
    connection to resume without a gap.
    """

    def __init__(self, url: str, encoding: str, loop: asyncio.AbstractEventLoop, request_timeout_s: Optional[float]):
        """Use ``SharonClient.connect``; this only sets up state."""
        self.url = url
        self.encoding = encoding
        self.subprotocol = SUBPROTOCOLS[encoding]
        self.request_timeout_s = request_timeout_s
        self.user_id: Optional[str] = None
        self.pseudonym: Optional[str] = None
        self.device_id: Optional[str] = None
        self.token: Optional[str] = None
        self.last_pos: Optional[int] = None
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self._codec = codec_for(self.subprotocol)
        self._loop = loop
        self._proto: Optional[_Protocol] = None
        self._opened: asyncio.Future = loop.create_future()
        self._lost: asyncio.Future = loop.create_future()
        self._closing = False
        self._refusal: Optional[str] = None
        self._failure: Optional[str] = None
        self._pending: Dict[int, asyncio.Future] = {}
        self._abandoned: Dict[int, None] = {}  # ids of timed-out requests: drop their late replies
        self._last_id = 0
        self._events: asyncio.Queue = asyncio.Queue()  # bounded by hand: the sentinel must always fit
        self._frames: asyncio.Queue = asyncio.Queue()
        self._listeners: List[Callable[[Dict[str, Any]], Any]] = []

    # -- connection ------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        encoding: str = "msgpack",
        timeout_s: float = 10.0,
        request_timeout_s: Optional[float] = 60.0,
    ) -> "SharonClient":
        """Open a WebSocket to ``url`` (e.g. ``ws://127.0.0.1:8448/ws``) offering one subprotocol.

        ``encoding`` is ``msgpack`` or ``json``. ``timeout_s`` (seconds) bounds the TCP connect
        plus handshake (TimeoutError); a refused connection or handshake, or a server that
        does not select the offered subprotocol, raises ConnectionError saying why.
        ``request_timeout_s`` (seconds, None for none) bounds each ``request``.
        """
        if encoding not in SUBPROTOCOLS:
            raise ValueError(f"encoding must be one of {sorted(SUBPROTOCOLS)}, not {encoding!r}")
        loop, reactor = install_reactor()
        if asyncio.get_running_loop() is not loop:
            raise RuntimeError("SharonClient must run on the loop of clients.runtime.install_reactor()")
        self = cls(url, encoding, loop, request_timeout_s)
        try:
            factory = _Factory(url, protocols=[self.subprotocol], reactor=reactor)
        except Exception as e:  # autobahn raises bare Exception for a malformed URL
            raise ValueError(f"bad server URL {url!r}: {e}") from None
        factory.client = self
        factory.logFrames = factory.logOctets = factory.trackTimings = False
        factory.setProtocolOptions(
            maxMessagePayloadSize=MAX_INCOMING_BYTES,
            maxFramePayloadSize=MAX_INCOMING_BYTES,
            openHandshakeTimeout=timeout_s,
            closeHandshakeTimeout=2,
            autoPingInterval=30,
            autoPingTimeout=30,
        )
        context = None
        if factory.isSecure:
            from twisted.internet import ssl

            context = ssl.optionsForClientTLS(factory.host)
        connector = connectWS(factory, context, timeout=max(1, int(timeout_s + 0.999)))
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            connector.disconnect()
            raise TimeoutError(f"could not connect to {url} within {timeout_s} s") from None
        return self

    async def __aenter__(self) -> "SharonClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once ``close`` was called or the connection was lost."""
        return self._closing or self._lost.done()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close the connection cleanly (code 1000), aborting it if that takes over ``timeout_s`` seconds."""
        if self._proto is not None and not self._lost.done():
            self._closing = True
            self._proto.sendClose(1000)
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), timeout_s)
            except (asyncio.TimeoutError, TimeoutError):
                self._proto.transport.abortConnection()
                await asyncio.shield(self._lost)
        self._closing = True

    def _on_open(self, proto: _Protocol) -> None:
        self._proto = proto
        if not self._opened.done():
            self._opened.set_result(None)

    def _on_connect_failed(self, reason: str) -> None:
        if not self._opened.done():
            self._opened.set_exception(ConnectionError(f"cannot connect to {self.url}: {reason}"))

    def _on_close(self, code: Optional[int], reason: Optional[str]) -> None:
        if not self._opened.done():
            why = self._refusal or reason or "connection closed during the handshake"
            self._opened.set_exception(ConnectionError(f"server refused the WebSocket connection to {self.url}: {why}"))
        if self._lost.done():
            return
        self.close_code, self.close_reason = code, reason
        error = self._connection_error()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()
        self._events.put_nowait(_CLOSED)
        self._frames.put_nowait(_CLOSED)
        self._lost.set_result(None)

    def _connection_error(self) -> ConnectionError:
        if self._failure:
            return ConnectionError(f"connection to {self.url} closed: {self._failure}")
        if self._closing and not self._lost.done():
            return ConnectionError(f"connection to {self.url} is closing")
        if self._closing:
            return ConnectionError(f"connection to {self.url} was closed by the client")
        detail = f" (code {self.close_code}: {self.close_reason})" if self.close_code or self.close_reason else ""
        return ConnectionError(f"connection to {self.url} lost{detail}")

    def _fail(self, why: str) -> None:
        """Close the connection because of a client-side fault; later errors carry ``why``."""
        if self._failure is None:
            self._failure = why
            log.error("closing connection to %s: %s", self.url, why)
            if self._proto is not None:
                self._proto.sendClose(4000, why[:120])

    # -- incoming frames -------------------------------------------------------------------

    def _on_message(self, payload: bytes, is_binary: bool) -> None:
        if self._failure:
            return
        try:
            frame = self._codec.decode(payload)
        except Exception as e:
            self._fail(f"server sent an undecodable frame ({e})")
            return
        if not isinstance(frame, dict):
            self._fail("server sent a frame that is not an object")
            return
        op = frame.get("op")
        if op == "event":
            self._on_event(frame.get("event"))
            return
        rid = frame.get("id")
        if op in ("ok", "error") and type(rid) is int:
            fut = self._pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(frame)
                return
            if self._abandoned.pop(rid, False) is None:
                return
        self._enqueue(self._frames, frame, "unmatched reply frames")

    def _on_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            self._fail("server pushed an event that is not an object")
            return
        pos = event.get("pos")
        if type(pos) is int and (self.last_pos is None or pos > self.last_pos):
            self.last_pos = pos
        if not self._listeners:
            self._enqueue(self._events, event, "live events")
            return
        for callback in list(self._listeners):
            try:
                callback(event)
            except Exception:
                log.exception("event listener %r failed", callback)

    def _enqueue(self, queue: asyncio.Queue, item: Dict[str, Any], what: str) -> None:
        if queue.qsize() >= MAX_QUEUED_EVENTS:
            self._fail(f"more than {MAX_QUEUED_EVENTS} {what} were not consumed")
            return
        queue.put_nowait(item)

    async def _next_from(self, queue: asyncio.Queue, timeout_s: Optional[float]) -> Dict[str, Any]:
        item = await asyncio.wait_for(queue.get(), timeout_s)
        if item is _CLOSED:
            queue.put_nowait(_CLOSED)  # wake every later caller too
            raise self._connection_error()
        return item

    # -- live events and raw frames --------------------------------------------------------

    async def next_event(self, timeout_s: Optional[float] = 10.0) -> Dict[str, Any]:
        """The next pushed client event, in arrival order.

        Waits up to ``timeout_s`` seconds (None: forever); raises TimeoutError when nothing
        arrives and ConnectionError once the connection is gone and the queue is drained.
        """
        return await self._next_from(self._events, timeout_s)

    def add_event_listener(self, callback: Callable[[Dict[str, Any]], Any]) -> None:
        """Call ``callback(event)`` for each pushed event, on the loop, as it arrives.

        While at least one listener is registered, events go to the listeners instead of
        the ``next_event`` queue (so an unread queue can never fill up behind them).
        """
        self._listeners.append(callback)

    def remove_event_listener(self, callback: Callable[[Dict[str, Any]], Any]) -> None:
        """Stop calling ``callback``; events go back to the queue when no listener is left."""
        self._listeners.remove(callback)

    async def send_raw(self, data: bytes, *, binary: bool) -> None:
        """Send ``data`` as one WebSocket message (binary or text frame), unchecked: for tests of bad input."""
        self._check_open()
        self._proto.sendMessage(data, isBinary=binary)

    async def next_frame(self, timeout_s: Optional[float] = 10.0) -> Dict[str, Any]:
        """The next decoded ``ok``/``error`` frame that matched no pending request (e.g. replies to ``send_raw``).

        Waits up to ``timeout_s`` seconds (None: forever); TimeoutError when nothing arrives.
        Raw frames should use string ids (or none) so they never collide with ``request`` ids.
        """
        return await self._next_from(self._frames, timeout_s)

    def take_frames(self) -> List[Dict[str, Any]]:
        """Every pushed frame already received (e.g. a ``signpost`` pushed before the reply
        to a ``send``), without waiting; the queue is left empty (or closed)."""
        out: List[Dict[str, Any]] = []
        while not self._frames.empty():
            item = self._frames.get_nowait()
            if item is _CLOSED:
                self._frames.put_nowait(_CLOSED)
                break
            out.append(item)
        return out

    # -- requests --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._proto is None or self.closed:
            raise self._connection_error()

    async def request(self, op: str, **fields: Any) -> Dict[str, Any]:
        """Send ``{"op": op, "id": N, **fields}`` and return the ``ok`` reply without ``op`` and ``id``.

        An ``error`` reply raises the ``protocol.errors`` class for its code (with ``reason``
        and ``field``); a lost connection raises ConnectionError; no reply within
        ``request_timeout_s`` seconds raises TimeoutError.
        """
        if "op" in fields or "id" in fields:
            raise TypeError("request() assigns 'op' and 'id' itself")
        self._check_open()
        self._last_id = self._last_id % _MAX_REQUEST_ID + 1
        rid = self._last_id
        data = self._codec.encode({"op": op, "id": rid, **fields})
        fut = self._loop.create_future()
        self._pending[rid] = fut
        try:
            self._proto.sendMessage(data, isBinary=self._codec.binary)
            reply = await asyncio.wait_for(fut, self.request_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            self._abandoned[rid] = None
            if len(self._abandoned) > _MAX_ABANDONED:
                del self._abandoned[next(iter(self._abandoned))]
            raise TimeoutError(f"no reply to {op!r} within {self.request_timeout_s} s") from None
        finally:
            self._pending.pop(rid, None)
        if reply.get("op") == "error":
            raise error_from_reply(reply)
        return {k: v for k, v in reply.items() if k not in ("op", "id")}

    # -- accounts and sessions -------------------------------------------------------------

    def _remember(self, result: Dict[str, Any]) -> None:
        self.user_id = result.get("user_id")
        self.pseudonym = result.get("pseudonym")
        self.device_id = result.get("device_id")

    async def register(self, pseudonym: str, password: str, device_name: Optional[str] = None) -> Dict[str, Any]:
        """Create an account and sign this connection in; returns user_id, pseudonym, device_id, token."""
        result = await self.request("register", **_present(pseudonym=pseudonym, password=password, device_name=device_name))
        self._remember(result)
        self.token = result.get("token")
        return result

    async def login(self, pseudonym: str, password: str, device_name: Optional[str] = None) -> Dict[str, Any]:
        """Sign in as a new device of an existing account; returns user_id, pseudonym, device_id, token."""
        result = await self.request("login", **_present(pseudonym=pseudonym, password=password, device_name=device_name))
        self._remember(result)
        self.token = result.get("token")
        return result

    async def auth(self, token: str) -> Dict[str, Any]:
        """Authenticate this connection with a saved token; returns user_id, pseudonym, device_id."""
        result = await self.request("auth", token=token)
        self._remember(result)
        self.token = token
        return result

    async def logout(self) -> Dict[str, Any]:
        """Revoke this connection's token; the connection stays open but unauthenticated."""
        result = await self.request("logout")
        self.user_id = self.pseudonym = self.device_id = self.token = None
        return result

    async def ping(self) -> Dict[str, Any]:
        """Round-trip a no-op request; returns ``{}``."""
        return await self.request("ping")

    # -- rooms and messages ----------------------------------------------------------------

    async def create_room(self, kind: str, name: str, topic: Optional[str] = None, public: bool = False) -> Dict[str, Any]:
        """Create a room of ``kind`` (chat, dm, forum, wall, blog); returns room_id and pos."""
        return await self.request("create_room", **_present(kind=kind, name=name, topic=topic, public=public))

    async def invite(self, room_id: Any, user_id: Any) -> Dict[str, Any]:
        """Invite ``user_id`` to ``room_id``; returns event_id and pos."""
        return await self.request("invite", room_id=str(room_id), user_id=str(user_id))

    async def join(self, room_id: Any) -> Dict[str, Any]:
        """Join a public room or one we are invited to; returns event_id and pos."""
        return await self.request("join", room_id=str(room_id))

    async def leave(self, room_id: Any) -> Dict[str, Any]:
        """Leave ``room_id``; returns event_id and pos."""
        return await self.request("leave", room_id=str(room_id))

    async def rooms(self) -> List[Dict[str, Any]]:
        """Summaries of the rooms we are joined or invited to (room_id, kind, name, topic, public, membership, members)."""
        return (await self.request("rooms"))["rooms"]

    async def send(self, room_id: Any, body: str, txn_id: Optional[str] = None) -> Dict[str, Any]:
        """Send a text message; returns event_id, pos, duplicate. A fresh ``txn_id`` is made when None."""
        txn = txn_id if txn_id is not None else uuid.uuid4().hex
        return await self.request("send", room_id=str(room_id), txn_id=txn, body=body)

    async def history(self, room_id: Any, dir: str = "b", from_pos: Optional[int] = None, limit: int = 50) -> Dict[str, Any]:
        """One page of a room: ``events`` (newest first for dir b, oldest first for f) and ``next`` (a from_pos or None)."""
        return await self.request("history", **_present(room_id=str(room_id), dir=dir, limit=limit, **{"from": from_pos}))

    async def sync(self, since: Optional[int] = None) -> Dict[str, Any]:
        """Go live: events after ``since`` (if given) are pushed first, then live ones; returns ``pos``."""
        result = await self.request("sync", **_present(since=since))
        pos = result.get("pos")
        if type(pos) is int and (self.last_pos is None or pos > self.last_pos):
            self.last_pos = pos
        return result


def _present(**fields: Any) -> Dict[str, Any]:
    """The fields whose value is not None (optional wire fields are omitted, never null)."""
    return {k: v for k, v in fields.items() if v is not None}
