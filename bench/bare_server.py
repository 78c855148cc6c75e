"""The bare stack: a minimal autobahn broadcast server on Twisted, no database, no auth.

It speaks just enough of the SHaRON protocol (msgpack subprotocol) for the load driver to
drive it exactly as it drives the real server: ``auth``/``join``/``sync``/``create_room``
answer ``ok`` at once; ``send`` builds a client event of the same shape and size as the
real server's, encodes it once, prepares one WebSocket frame (``prepareMessage``) and
writes it to every synced connection (``sendPreparedMessage``), then acknowledges. That
is the ceiling a Twisted + autobahn server can reach on this machine: the ratio of the
real server's figure to this one is what the targets are about.

``--reactor asyncio`` (the reactor the real server uses) or ``epoll``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, List, Optional, Set

import msgpack

__all__ = ["main"]

ROOM_ID = "!" + "B" * 43


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bare-server")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--reactor", choices=("asyncio", "epoll"), default="asyncio")
    args = p.parse_args(argv)
    if args.reactor == "asyncio":
        import asyncio

        from twisted.internet import asyncioreactor

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from autobahn.twisted.resource import WebSocketResource
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    packb = msgpack.packb
    unpackb = msgpack.unpackb
    live: Set[Any] = set()
    counter = [0]

    class BareProtocol(WebSocketServerProtocol):
        def onConnect(self, request: Any) -> str:
            return "sharon.v1.msgpack"

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            live.discard(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            frame = unpackb(payload)
            op = frame.get("op")
            rid = frame.get("id")
            if op == "send":
                counter[0] += 1
                pos = counter[0]
                event = {"op": "event", "event": {
                    "pos": pos, "event_id": "$" + str(pos).rjust(43, "A"), "room_id": frame["room_id"],
                    "type": "m.room.message", "sender": "@ubenchbenchbe:localhost",
                    "sender_pseudonym": "bench-sender",
                    "content": {"msgtype": "m.text", "body": frame["body"]},
                    "origin_server_ts": int(time.time() * 1000)}}
                prepared = self.factory.prepareMessage(packb(event), True)
                for conn in list(live):
                    conn.sendPreparedMessage(prepared)
                self.sendMessage(packb({"op": "ok", "id": rid, "event_id": event["event"]["event_id"],
                                        "pos": pos, "duplicate": False}), True)
                return
            result: dict = {}
            if op == "sync":
                live.add(self)
                result = {"pos": counter[0]}
            elif op == "auth":
                result = {"user_id": "@ubenchbenchbe:localhost", "pseudonym": "bench", "device_id": "BENCH"}
            elif op in ("create_room", "join"):
                result = {"room_id": ROOM_ID, "event_id": "$" + "E" * 43, "pos": counter[0]}
            self.sendMessage(packb(dict({"op": "ok", "id": rid}, **result)), True)

    factory = WebSocketServerFactory(None, protocols=["sharon.v1.msgpack"])
    factory.protocol = BareProtocol
    factory.setProtocolOptions(utf8validateIncoming=False, autoPingInterval=30, autoPingTimeout=60)
    root = Resource()
    root.putChild(b"ws", WebSocketResource(factory))

    class Health(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            return b'{"status": "ok"}'

    root.putChild(b"health", Health())
    port = reactor.listenTCP(args.port, Site(root), interface="127.0.0.1")
    print(json.dumps({"event": "bare.listening", "port": port.getHost().port, "reactor": args.reactor}),
          flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
