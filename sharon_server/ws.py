"""The client WebSocket endpoint (``/ws``): frame decoding, dispatch, replies and pushes.

Every frame is decoded and validated by ``protocol.frames``; every failure becomes exactly
one error frame naming the code, field and reason, and the connection keeps serving. Only
abuse of the transport (a flood of bad frames, a replay buffer overflow) closes it.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Optional

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.tcp import Server as _TCPServer
from twisted.logger import Logger
from twisted.web.http import HTTPChannel

from protocol import frames as F
from protocol.errors import (
    Conflict, InternalError, NotAuthenticated, SharonError, TooLarge, Unavailable,
)
from sharon_server.accounts import Session
from sharon_server.event_types import HeldForReview

__all__ = ["SharonServerProtocol", "SharonServerFactory", "MAX_CONSECUTIVE_ERRORS", "REPLIED"]

log = Logger(namespace="sharon.ws")

MAX_CONSECUTIVE_ERRORS = 100
REPLIED = object()
"""A handler result meaning the handler already sent its reply itself."""
_CODECS = {F.SUBPROTOCOL_MSGPACK: F.MSGPACK_CODEC, F.SUBPROTOCOL_JSON: F.JSON_CODEC}
_NO_HEADERS: Any = MappingProxyType({})
_HANDSHAKE_ONLY = {
    # autobahn reads these only while processing the opening handshake; an open
    # connection keeps shared empty values instead of its own copies (decision 0016).
    "http_request_data": b"", "http_response_data": "", "http_status_line": "",
    "http_headers": _NO_HEADERS, "http_request_params": _NO_HEADERS,
}


def _quiet_autobahn() -> None:
    """Stop autobahn formatting a debug line nobody sees on every connection.

    ``WebSocketProtocol._connectionMade`` passes ``pformat(<its 40 config attributes>)`` to
    ``log.debug`` eagerly: ~3.6 % of the server's time when thousands connect (issue #3).
    The module's ``pformat`` is replaced by one that returns such a list itself, which the
    logger turns into text (one line, ``repr``) only if a debug line is ever emitted; every
    other use (timings text, ``trackTimings``, off here) still gets the real ``pformat``.
    """
    from pprint import pformat

    from autobahn.websocket import protocol as ab_protocol

    def lazy_pformat(obj: Any, *args: Any, **kwargs: Any) -> Any:
        return obj if type(obj) is list and not args and not kwargs else pformat(obj, *args, **kwargs)

    if getattr(ab_protocol, "pformat", None) is pformat:
        ab_protocol.pformat = lazy_pformat


_quiet_autobahn()


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data``, straight to the socket when nothing is waiting in the transport.

    Twisted's ``transport.write`` only buffers: it registers the socket for writing (an
    ``epoll_ctl``), the reactor sends on its next turn and unregisters it (another one).
    For a plain TCP transport with an empty buffer we send at once and hand Twisted only
    what the socket did not take, so the stream order is unchanged (decision 0012).
    """
    if (type(transport) is _TCPServer and transport.connected and not transport.disconnecting
            and not transport._writeDisconnected and not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer)):
        try:
            sent = transport.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # Twisted's own write path meets the error again and closes cleanly
        if sent >= len(data):
            return
        data = data[sent:]
    transport.write(data)


class SharonServerProtocol(WebSocketServerProtocol):
    """One client connection: at most one session, live once it has sent ``sync``."""

    factory: "SharonServerFactory"

    def __init__(self) -> None:
        super().__init__()
        self.codec: Any = F.MSGPACK_CODEC
        self.session: Optional[Session] = None
        self.user_id: Optional[str] = None
        self.replaying = False
        self._buffer: List[Any] = []
        self._errors_in_a_row = 0

    # -- autobahn callbacks ------------------------------------------------------------
    def onConnect(self, request: Any) -> str:
        for offered in request.protocols:
            if offered in _CODECS:
                self.codec = _CODECS[offered]
                return offered
        raise ConnectionDeny(400, "offer one of the subprotocols: " + ", ".join(F.SUBPROTOCOLS))

    def onOpen(self) -> None:
        self._drop_handshake_state()
        self.factory.connections.add(self)
        log.debug("ws.open", subprotocol=self.codec.subprotocol, connections=len(self.factory.connections))

    def _drop_handshake_state(self) -> None:
        """Let go of what only the opening handshake needed (~4-5 KiB per idle connection).

        twisted.web registered its ``HTTPChannel`` as the TCP transport's streaming producer
        before autobahn took the transport over; the channel, the upgrade ``Request`` and its
        headers then lived as long as the WebSocket. For a WebSocket that producer does
        nothing: the channel is still "handling" the upgrade request, so its pause and resume
        have nothing to pause, and it never gets ``connectionLost`` (the transport's protocol
        is this connection now). Unregistering it leaves the transport writing exactly as
        before, and the channel and request become garbage. autobahn's own copies of the
        request and response text and the parsed headers go too.
        """
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            transport.unregisterProducer()
        self.__dict__.update(_HANDSHAKE_ONLY)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.factory.connections.discard(self)
        self.factory.hub.remove_connection(self, self.user_id)
        log.debug("ws.close", code=code, clean=wasClean, user_id=self.user_id)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        request_id = None
        try:
            if len(payload) > self.factory.max_frame_bytes:
                raise TooLarge(f"frame is {len(payload)} bytes; the limit is {self.factory.max_frame_bytes}")
            frame = self.codec.decode(payload)
            request_id = F.read_request_id(frame)
            request = F.parse_request(frame)
        except SharonError as err:
            self._error(request_id, err)
            return
        handler = self.factory.handlers[type(request)]
        asyncio.get_running_loop().create_task(self._run(handler, request))

    async def _run(self, handler: Callable[..., Any], request: Any) -> None:
        try:
            result = await handler(self, request)
        except SharonError as err:
            self._error(request.id, err)
            return
        except HeldForReview as held:
            result = held.result
        except Exception:  # noqa: BLE001 - one place turns faults into an error frame
            log.failure("ws.handler_failed", op=type(request).__name__)
            self._error(request.id, InternalError("internal error; the server log has details"))
            return
        self._errors_in_a_row = 0
        if result is not REPLIED:
            self.reply(F.ok_frame(request.id, result or {}))

    # -- writing ------------------------------------------------------------------------
    def reply(self, frame: Dict[str, Any]) -> None:
        """Encode and send one frame to this connection (no-op once closed)."""
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendMessage(self.codec.encode(frame), self.codec.binary)

    def _error(self, request_id: Any, err: SharonError) -> None:
        self._errors_in_a_row += 1
        self.reply(F.error_frame(request_id, err))
        if self._errors_in_a_row >= MAX_CONSECUTIVE_ERRORS:
            log.warn("ws.closing_flood", errors=self._errors_in_a_row)
            self.sendClose(4008, "too many invalid frames in a row")

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        """autobahn's write, without its per-call debug formatting, through ``write_now``."""
        if sync or chopsize or self.send_queue or self.transport is None:
            super().sendData(data, sync, chopsize)
            return
        write_now(self.transport, data)
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)

    def deliver_frames(self, frames: List[Any]) -> None:
        """Write several prepared event frames (one pump turn's, in stream order) at once."""
        if (self.replaying or self._perMessageCompress is not None or len(frames) == 1
                or self.state != WebSocketServerProtocol.STATE_OPEN):
            for prepared in frames:
                self.deliver_prepared(prepared)
            return
        self.sendData(b"".join([p.payloadHybi for p in frames]))

    def deliver_prepared(self, prepared: Any) -> None:
        """Write a prepared event frame, or hold it while a resume replay is running."""
        if self.replaying:
            if len(self._buffer) >= self.factory.max_replay_buffer:
                self.replaying = False
                self._buffer = []
                self.sendClose(4013, "fell too far behind during resume; reconnect and resume again")
                return
            self._buffer.append(prepared)
        elif self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendPreparedMessage(prepared)

    def emit_event(self, client_event: Dict[str, Any]) -> None:
        """Send one event frame directly (resume replay)."""
        self.reply(F.event_frame(client_event))

    # -- session --------------------------------------------------------------------------
    def require_session(self) -> Session:
        """The authenticated session, or NotAuthenticated."""
        if self.session is None:
            raise NotAuthenticated("authenticate first with auth, login or register")
        return self.session

    def set_session(self, session: Optional[Session]) -> None:
        """Switch this connection to ``session`` (None logs it out); it is not live until sync."""
        if self.user_id is not None:
            self.factory.hub.remove_connection(self, self.user_id)
        self.session = session
        self.user_id = session.user_id if session else None
        if session is not None:
            log.debug("session.started", user_id=session.user_id, device_id=session.device_id)

    async def start_sync(self, request_id: Any, since: Optional[int]) -> object:
        """Go live; replay everything after ``since`` first, then reply and flush held events."""
        session = self.require_session()
        if self.replaying:
            raise Conflict("a resume is already running on this connection")
        rooms = self.factory.rooms
        hub = self.factory.hub
        hub.add_connection(self, session.user_id, list(rooms.joined_rooms(session.user_id)))
        upto = hub.delivered_pos
        if since is None or since >= upto:
            self.reply(F.ok_frame(request_id, {"pos": upto}))
            return REPLIED
        self.replaying = True
        self._buffer = []
        try:
            await rooms.replay(session.user_id, since, upto, self.emit_event)
        finally:
            was_replaying = self.replaying
            self.replaying = False
        if not was_replaying:
            raise Unavailable("resume aborted: the connection fell too far behind")
        self.reply(F.ok_frame(request_id, {"pos": upto}))
        buffered, self._buffer = self._buffer, []
        for prepared in buffered:
            self.deliver_prepared(prepared)
        return REPLIED


class SharonServerFactory(WebSocketServerFactory):
    """Builds connections and holds what they share: services, the hub, limits."""

    protocol = SharonServerProtocol

    def __init__(self, url: Optional[str], *, rooms: Any, accounts: Any, hub: Any, handlers: Dict[type, Any],
                 max_frame_bytes: int, max_replay_buffer: int) -> None:
        super().__init__(url, protocols=list(F.SUBPROTOCOLS))
        self.rooms = rooms
        self.accounts = accounts
        self.hub = hub
        self.handlers = handlers
        self.max_frame_bytes = max_frame_bytes
        self.max_replay_buffer = max_replay_buffer
        self.connections: set = set()
        accounts.on_revoke.append(self.revoke)
        # Frames above the hard limit close the connection; between max_frame_bytes and the
        # hard limit they get a too_large error and the connection stays open.
        self.setProtocolOptions(
            maxFramePayloadSize=4 * max_frame_bytes,
            maxMessagePayloadSize=4 * max_frame_bytes,
            autoPingInterval=30, autoPingTimeout=60,
            openHandshakeTimeout=10, closeHandshakeTimeout=5,
            failByDrop=False,
            # Our JSON codec rejects invalid UTF-8 with a bad_json error frame; autobahn's
            # own check would instead close the connection (1007).
            utf8validateIncoming=False,
        )
        # autobahn copies its ~29 option attributes from the factory into EVERY connection's
        # __dict__ unless the protocol class already has them (~1.7 KiB per connection):
        # give this factory's own protocol subclass the values, so connections share them.
        # (Options set after this point would not reach connections: set them above.)
        self.protocol = type(self.protocol.__name__, (self.protocol,), {
            name: getattr(self, name) for name in self.protocol.CONFIG_ATTRS})

    def revoke(self, token_hash: bytes) -> None:
        """Sign out every connection using a token that was just logged out."""
        for conn in list(self.connections):
            if conn.session is not None and conn.session.token_hash == token_hash:
                conn.set_session(None)
