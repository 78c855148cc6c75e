"""HTTP endpoints on twisted.web: health, account routes and the signing-key document.

Bodies are strict JSON of at most ``max_http_body_bytes``; a larger declared or streamed
body is refused with 413 before it is buffered. Errors use the codes of protocol/errors.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Dict, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from protocol.canonical_json import decode_strict
from protocol.errors import BadField, BadRequest, InternalError, MissingField, SharonError, UnknownToken
from protocol.signing import sign_json

__all__ = ["build_site", "LimitedRequest", "SITE_BODY_LIMITS", "AsyncJSON", "bearer_token", "write_json", "str_field"]

log = Logger(namespace="sharon.http")


def write_json(request: Request, status: int, body: Dict[str, Any]) -> None:
    if request.finished or request._disconnected:  # noqa: SLF001 - twisted exposes no public flag
        return
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-length", str(len(payload)).encode())
    request.write(payload)
    request.finish()


SITE_BODY_LIMITS: Dict[bytes, int] = {}
"""Per-route body limits in bytes, keyed by exact path without the query (e.g.
``b"/api/v1/media/upload"``), for routes that take larger (or smaller) bodies than
``max_body``. Features set them at install time. Bodies over 100 kB are buffered by Twisted
in an anonymous temporary file, not in memory."""


class LimitedRequest(Request):
    """A request that refuses bodies over its limit with 413 before buffering them.

    The limit is ``SITE_BODY_LIMITS[path]`` for routes that opted in, else ``max_body``.
    """

    max_body = 65536
    _seen = 0
    _limit: Optional[int] = None

    def body_limit(self) -> int:
        """This request's body limit, decided from the request line's path."""
        if self._limit is None:
            target = getattr(self.channel, "_path", None) or b""  # the request line's target
            self._limit = SITE_BODY_LIMITS.get(target.split(b"?", 1)[0], self.max_body)
        return self._limit

    def _refuse(self) -> None:
        body = json.dumps({"code": "too_large", "reason": f"request body over {self.body_limit()} bytes"}).encode()
        self.channel.transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.channel.transport.loseConnection()

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > self.body_limit():
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._seen += len(data)
        limit = self.body_limit()
        if self._seen > limit:
            if self._seen - len(data) <= limit:
                self._refuse()
            return
        super().handleContentChunk(data)


class AsyncJSON(Resource):
    """A leaf resource whose POST handler is an async function of the parsed body."""

    isLeaf = True

    def __init__(self, handler: Callable[[Request, Dict[str, Any]], Awaitable[Dict[str, Any]]]) -> None:
        super().__init__()
        self._handler = handler

    def render_POST(self, request: Request) -> Any:
        Deferred.fromFuture(asyncio.ensure_future(self._serve(request)))
        return NOT_DONE_YET

    async def _serve(self, request: Request) -> None:
        try:
            raw = request.content.read()
            body = decode_strict(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            result = await self._handler(request, body)
        except SharonError as err:
            write_json(request, err.http_status, err.to_dict())
            return
        except Exception:  # noqa: BLE001 - one place turns faults into a 500
            log.failure("http.handler_failed", path=request.path.decode("latin-1"))
            err = InternalError("internal error; the server log has details")
            write_json(request, err.http_status, err.to_dict())
            return
        write_json(request, 200, result)


def str_field(body: Dict[str, Any], name: str, required: bool = True) -> Optional[str]:
    value = body.get(name)
    if value is None:
        if required:
            raise MissingField(f"{name} is required", name)
        return None
    if type(value) is not str:
        raise BadField(f"{name} must be a string", name)
    return value


def bearer_token(request: Request) -> str:
    raw = request.getHeader(b"authorization") or b""
    header = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise UnknownToken("send the token as 'Authorization: Bearer TOKEN'", "authorization")
    return token.strip()


class _Health(Resource):
    """GET /health: liveness plus a few figures."""

    isLeaf = True

    def __init__(self, info: Callable[[], Dict[str, Any]]) -> None:
        super().__init__()
        self._info = info

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self._info()).encode()


class _KeyDocument(Resource):
    """GET /key/v2/server: this server's self-signed verify keys (federation.md §5.2)."""

    isLeaf = True

    def __init__(self, server_name: str, key: Any, now_ms: Callable[[], int]) -> None:
        super().__init__()
        self._server_name, self._key, self._now_ms = server_name, key, now_ms

    def render_GET(self, request: Request) -> bytes:
        doc = {
            "server_name": self._server_name,
            "verify_keys": {self._key.key_id: {"key": self._key.public_key_b64()}},
            "old_verify_keys": {},
            "valid_until_ts": self._now_ms() + 7 * 24 * 3600 * 1000,
        }
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(sign_json(doc, self._server_name, self._key)).encode()


def build_site(*, accounts: Any, ws_resource: Resource, health: Callable[[], Dict[str, Any]],
               server_name: str, signing_key: Any, now_ms: Callable[[], int], max_body: int,
               api_v1: Optional[Resource] = None) -> Site:
    """The HTTP site: /health, /api/v1/{register,login,logout}, /key/v2/server and /ws.

    Features add their routes to ``api_v1`` (pass the same Resource they were given).
    """

    async def register(request: Request, body: Dict[str, Any]) -> Dict[str, Any]:
        """POST /api/v1/register"""
        session, token = await accounts.register(
            str_field(body, "pseudonym"), str_field(body, "password"), str_field(body, "device_name", False),
            invite_code=str_field(body, "invite_code", False))
        return session.as_result(token)

    async def login(request: Request, body: Dict[str, Any]) -> Dict[str, Any]:
        """POST /api/v1/login"""
        session, token = await accounts.login(
            str_field(body, "pseudonym"), str_field(body, "password"), str_field(body, "device_name", False))
        return session.as_result(token)

    async def logout(request: Request, body: Dict[str, Any]) -> Dict[str, Any]:
        """POST /api/v1/logout"""
        session = await accounts.authenticate(bearer_token(request))
        await accounts.logout(session)
        return {}

    root = Resource()
    root.putChild(b"health", _Health(health))
    api = Resource()
    v1 = api_v1 if api_v1 is not None else Resource()
    root.putChild(b"api", api)
    api.putChild(b"v1", v1)
    v1.putChild(b"register", AsyncJSON(register))
    v1.putChild(b"login", AsyncJSON(login))
    v1.putChild(b"logout", AsyncJSON(logout))
    key = Resource()
    key_v2 = Resource()
    root.putChild(b"key", key)
    key.putChild(b"v2", key_v2)
    key_v2.putChild(b"server", _KeyDocument(server_name, signing_key, now_ms))
    root.putChild(b"ws", ws_resource)
    site = Site(root)
    site.displayTracebacks = False
    site.requestFactory = type("SiteRequest", (LimitedRequest,), {"max_body": max_body})
    site.noisy = False
    return site
