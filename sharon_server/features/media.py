"""Media: upload, download (with byte ranges) and posts of images, audio and video.

- ``POST /api/v1/media/upload?room_id=!...&name=...``: the raw file as the body. Twisted
  buffers a large body in an anonymous temporary file (its per-route limit is set in
  ``sharon_server.http.SITE_BODY_LIMITS``); a body cut short never reaches ``render`` and
  that file goes with the connection. We sniff the first bytes, check the category's limit,
  then copy and hash in a worker thread into ``<data_dir>/media/tmp`` and rename into
  ``<data_dir>/media/ab/cd/<sha256>`` (atomic; identical content is stored once).
- ``GET /api/v1/media/<room_id>/<hash>``: joined members of the room only; single byte
  ranges; streamed from disk by a pull producer. The access token goes in the
  Authorization header only (a token in a URL ends up in access logs, histories and
  Referer headers); players that cannot set headers use a signed, expiring link from the
  ``media_link`` operation, bound to the user, who must still be joined when it is used.
- ``ps.media`` events and the ``media`` / ``media_post`` / ``media_link`` operations.

Size limits per category come from ``protocol.media.DEFAULT_LIMITS``, overridable with
``SHARON_MEDIA_MAX_IMAGE_BYTES``, ``SHARON_MEDIA_MAX_AUDIO_BYTES`` and
``SHARON_MEDIA_MAX_VIDEO_BYTES``; links live ``SHARON_MEDIA_LINK_TTL_S`` seconds (4 h).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Tuple

import sqlalchemy as sa
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPullProducer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from protocol import media as P
from protocol.errors import (
    BadField, Forbidden, InternalError, MissingField, NotFound, NotInRoom, SharonError, TooLarge,
)
from protocol.ids import RoomID
from sharon_server.event_types import EventType, SendContext
from sharon_server.http import SITE_BODY_LIMITS, bearer_token, write_json
from sharon_server.ops import register_handlers
from sharon_server.storage.schema_media import media as media_table

__all__ = ["install", "limits_from_env", "MediaStore", "UPLOAD_PATH"]

log = Logger(namespace="sharon.media")

UPLOAD_PATH = b"/api/v1/media/upload"
CHUNK = 1024 * 1024
SEND_CHUNK = 64 * 1024


def limits_from_env(environ: Mapping[str, str]) -> Dict[str, int]:
    """Per-category limits: the defaults, overridden by ``SHARON_MEDIA_MAX_<CATEGORY>_BYTES``."""
    limits = dict(P.DEFAULT_LIMITS)
    for category in P.CATEGORIES:
        name = f"SHARON_MEDIA_MAX_{category.upper()}_BYTES"
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer number of bytes, not {raw!r}") from None
        if value < 1:
            raise ValueError(f"{name} must be at least 1")
        limits[category] = value
    return limits


def _row_dict(row: Any) -> Dict[str, Any]:
    return {"hash": row.hash, "mime": row.mime, "category": row.category, "size": row.size,
            "name": row.name, "uploader": row.uploader, "created_ts": row.created_ts}


class MediaStore:
    """Files on disk by content hash, and the media table that says who may see them."""

    def __init__(self, db: Any, root: Path, now_ms: Any) -> None:
        self._db = db
        self.root = root
        self.tmp = root / "tmp"
        self._now_ms = now_ms

    def prepare_dirs(self) -> None:
        """Create the directories and clear temporary files a crash may have left."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():
            try:
                leftover.unlink()
            except OSError:
                pass

    def path_of(self, digest: str) -> Path:
        """Where the file with this SHA-256 lives."""
        return self.root / digest[0:2] / digest[2:4] / digest

    # -- files (run in a worker thread) ---------------------------------------------------
    def ingest(self, source: BinaryIO) -> Tuple[str, int]:
        """Copy ``source`` from its start into the store while hashing; (sha256, size).

        Writes a temporary file, fsyncs it and renames it into place; if the content is
        already stored the copy is dropped. No partial file is ever left at a final path.
        """
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="up-")
        try:
            with os.fdopen(fd, "wb") as out:
                source.seek(0)
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            hexdigest = digest.hexdigest()
            final = self.path_of(hexdigest)
            if final.exists():
                os.unlink(tmp_name)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, final)
                dir_fd = os.open(final.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            return hexdigest, size
        except BaseException:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
            raise

    # -- records ------------------------------------------------------------------------
    async def record(self, digest: str, room_id: str, uploader: str, mime: str, category: str,
                     size: int, name: Optional[str]) -> None:
        """Attach the file to the room for this uploader (a repeat upload changes nothing)."""
        try:
            async with self._db.engine.begin() as conn:
                exists = (await conn.execute(sa.select(media_table.c.hash).where(
                    media_table.c.hash == digest, media_table.c.room_id == room_id,
                    media_table.c.uploader == uploader))).first()
                if exists is None:
                    await conn.execute(media_table.insert().values(
                        hash=digest, room_id=room_id, uploader=uploader, mime=mime, category=category,
                        size=size, name=name, created_ts=self._now_ms()))
        except sa.exc.IntegrityError:
            pass  # the same upload raced us here: the row it wrote serves this one too

    async def lookup(self, digest: str, room_id: str, uploader: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The record of the file in the room (by that uploader, if given), or None."""
        query = sa.select(*media_table.c).where(media_table.c.hash == digest, media_table.c.room_id == room_id)
        if uploader is not None:
            query = query.where(media_table.c.uploader == uploader)
        async with self._db.read_engine.connect() as conn:
            row = (await conn.execute(query.order_by(media_table.c.created_ts).limit(1))).first()
        return None if row is None else _row_dict(row)

    async def list_room(self, room_id: str, before: Optional[Tuple[int, str, str]],
                        limit: int) -> Tuple[List[Dict[str, Any]], Optional[str]]:
        """A page of the room's uploads, newest first, and the cursor of the next page."""
        c = media_table.c
        query = sa.select(*c).where(c.room_id == room_id)
        if before is not None:
            ts, digest, uploader = before
            query = query.where(sa.or_(
                c.created_ts < ts,
                sa.and_(c.created_ts == ts, c.hash < digest),
                sa.and_(c.created_ts == ts, c.hash == digest, c.uploader < uploader)))
        query = query.order_by(c.created_ts.desc(), c.hash.desc(), c.uploader.desc()).limit(limit + 1)
        async with self._db.read_engine.connect() as conn:
            rows = (await conn.execute(query)).fetchall()
        items = [_row_dict(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = f"{last.created_ts}.{last.hash}.{last.uploader}"
        return items, nxt


def _parse_cursor(text: Optional[str]) -> Optional[Tuple[int, str, str]]:
    if text is None:
        return None
    ts, _, rest = text.partition(".")
    digest, _, uploader = rest.partition(".")
    if not ts.isdigit() or not P.is_media_hash(digest) or not uploader:
        raise BadField("before must be a cursor returned as next", "before")
    return int(ts), digest, uploader


def _query_arg(request: Request, name: str) -> Optional[str]:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadField(f"{name} must be UTF-8", name) from None


class _Links:
    """Signed, expiring download URLs bound to one user, room and file.

    The key is random per process: links stop working when the server restarts. The user
    must still be a joined member when the link is used.
    """

    def __init__(self, now_ms: Any, ttl_ms: int) -> None:
        self._key = secrets.token_bytes(32)
        self._now_ms = now_ms
        self.ttl_ms = ttl_ms

    def _sig(self, room_id: str, digest: str, user_id: str, expires: int) -> str:
        msg = f"{room_id}\n{digest}\n{user_id}\n{expires}".encode()
        return base64.urlsafe_b64encode(hmac.new(self._key, msg, hashlib.sha256).digest()).rstrip(b"=").decode()

    def make(self, room_id: str, digest: str, user_id: str) -> Tuple[str, int]:
        """The path-and-query of a link, and when it expires."""
        expires = self._now_ms() + self.ttl_ms
        query = urllib.parse.urlencode({"user": user_id, "expires": expires,
                                        "sig": self._sig(room_id, digest, user_id, expires)})
        return f"/api/v1/media/{urllib.parse.quote(room_id, safe='')}/{digest}?{query}", expires

    def check(self, request: Request, room_id: str, digest: str) -> str:
        """The user a valid, unexpired link was made for; Forbidden otherwise."""
        user_id, expires, sig = (_query_arg(request, k) for k in ("user", "expires", "sig"))
        if not (user_id and expires and sig and expires.isdigit()):
            raise Forbidden("the link is incomplete; ask for a new one with media_link", "sig")
        good = self._sig(room_id, digest, user_id, int(expires))
        if not hmac.compare_digest(good.encode(), sig.encode()):
            raise Forbidden("the link is not valid for this file", "sig")
        if int(expires) < self._now_ms():
            raise Forbidden("the link has expired; ask for a new one with media_link", "sig")
        return user_id


@implementer(IPullProducer)
class _RangeSender:
    """Writes ``length`` bytes of an open file to the request, one chunk per pull."""

    def __init__(self, request: Request, file: BinaryIO, length: int) -> None:
        self._request = request
        self._file = file
        self._left = length
        self._done = False

    def start(self) -> None:
        self._request.notifyFinish().addBoth(self._finished)
        self._request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self._done:
            return
        chunk = self._file.read(min(SEND_CHUNK, self._left)) if self._left > 0 else b""
        if chunk:
            self._left -= len(chunk)
            self._request.write(chunk)
        if not chunk or self._left <= 0:
            self._done = True
            self._file.close()
            self._request.unregisterProducer()
            self._request.finish()

    def stopProducing(self) -> None:
        self._done = True
        self._file.close()

    def _finished(self, result: Any) -> None:
        if not self._done:
            self._done = True
            self._file.close()
        return None


class _MediaResource(Resource):
    """``/api/v1/media``: ``POST upload`` and ``GET <room_id>/<hash>``."""

    isLeaf = True

    def __init__(self, feature: "_Media") -> None:
        super().__init__()
        self._f = feature

    def _spawn(self, request: Request, coro: Any) -> Any:
        async def guarded() -> None:
            try:
                await coro
            except SharonError as err:
                write_json(request, err.http_status, err.to_dict())
            except Exception:  # noqa: BLE001 - one place turns faults into a 500
                log.failure("media.handler_failed", path=request.path.decode("latin-1"))
                err = InternalError("internal error; the server log has details")
                write_json(request, err.http_status, err.to_dict())

        Deferred.fromFuture(asyncio.ensure_future(guarded()))
        return NOT_DONE_YET

    def render_POST(self, request: Request) -> Any:
        if request.postpath != [b"upload"]:
            return self._spawn(request, self._not_found())
        return self._spawn(request, self._f.upload(request))

    def render_GET(self, request: Request) -> Any:
        if len(request.postpath) != 2:
            return self._spawn(request, self._not_found())
        return self._spawn(request, self._f.download(request, *request.postpath))

    async def _not_found(self) -> None:
        raise NotFound("no such media endpoint; see docs/protocol.md §8.4")


class MediaType(EventType):
    """``ps.media``: a post of an uploaded file; the server fills in what the file is."""

    etype = P.MEDIA_EVENT

    def __init__(self, feature: "_Media") -> None:
        self._f = feature

    async def prepare(self, ctx: SendContext) -> None:
        """Replace the content with the server's record of the file, plus the caption."""
        media = ctx.content.get("media")
        if type(media) is not dict:
            raise BadField("media must be an object with the upload's hash", "media")
        digest = media.get("hash")
        if not P.is_media_hash(digest):
            raise BadField("media.hash must be 64 lower-case hex digits", "media.hash")
        body = ctx.content.get("body")
        if body is not None:
            if type(body) is not str or not body:
                raise BadField("body must be a non-empty string", "body")
            limit = self._f.rooms.body_limit(ctx.room_id, ctx.kind)
            if len(body) > limit:
                raise TooLarge(f"body is {len(body)} characters; the limit here is {limit}", "body")
        record = await self._f.store.lookup(digest, ctx.room_id, ctx.session.user_id)
        if record is None:
            raise BadField("you have not uploaded a file with that hash to this room", "media.hash")
        described = {k: record[k] for k in ("hash", "mime", "category", "size")}
        if record["name"]:
            described["name"] = record["name"]
        ctx.content = {"media": described}
        if body is not None:
            ctx.content["body"] = body
            ctx.scratch["text"] = [body]
        else:
            ctx.scratch["text"] = []


class _Media:
    """The feature's state and request handlers."""

    def __init__(self, ctx: Any, limits: Dict[str, int], link_ttl_ms: int = 4 * 3600 * 1000) -> None:
        self.rooms = ctx.rooms
        self.accounts = ctx.accounts
        self.limits = limits
        self.store = MediaStore(ctx.db, Path(ctx.data_dir) / "media", ctx.now_ms)
        self.links = _Links(ctx.now_ms, link_ttl_ms)

    def _member(self, room_id: str, user_id: str, read: bool = False) -> None:
        """Joined members only; for reading (``read``), also whoever a read guard lets in (a
        staff observer, #5), as for ``history``."""
        state = self.rooms.rooms.get(room_id)
        if state is None or (state.membership(user_id) != "join"
                             and not (read and self.rooms.may_read(user_id, room_id))):
            raise NotInRoom("only joined members of the room can do that", "room_id")

    async def upload(self, request: Request) -> None:
        session = await self.accounts.authenticate(bearer_token(request))
        room_arg = _query_arg(request, "room_id")
        if room_arg is None:
            raise MissingField("room_id is required (?room_id=!...)", "room_id")
        room_id = str(RoomID.parse(room_arg, field="room_id"))
        name = _query_arg(request, "name")
        if name is not None and len(name) > P.MAX_NAME_CHARS:
            raise BadField(f"name must be at most {P.MAX_NAME_CHARS} characters", "name")
        if name is not None:
            name = P.safe_filename(name, "") or None
        self._member(room_id, session.user_id)
        content = request.content
        content.seek(0, os.SEEK_END)
        size = content.tell()
        if size == 0:
            raise BadField("unsupported_media: the file is empty", "file")
        content.seek(0)
        head = content.read(P.SNIFF_BYTES)
        sniffed = P.sniff(head)
        if sniffed is None:
            raise BadField("unsupported_media: the content is not a PNG, JPEG, GIF or WebP image, "
                           "MP3, M4A, Ogg, WAV or FLAC audio, or MP4, MOV, WebM or Matroska video "
                           "(the type is read from the bytes, not the name)", "file")
        mime, category = sniffed
        limit = self.limits[category]
        if size > limit:
            raise TooLarge(f"{category} files may be at most {limit} bytes; this one is {size}", "file")
        digest, stored = await asyncio.to_thread(self.store.ingest, content)
        if stored != size:  # the buffer changed under us: never record a file we did not check
            raise InternalError("the upload changed while it was stored")
        await self.store.record(digest, room_id, session.user_id, mime, category, size, name)
        log.info("media.uploaded", room_id=room_id, hash=digest, mime=mime, size=size)
        write_json(request, 200, {"hash": digest, "mime": mime, "category": category, "size": size})

    async def download(self, request: Request, room_raw: bytes, hash_raw: bytes) -> None:
        signed = not request.getHeader(b"authorization") and request.args.get(b"sig") is not None
        user_id = None if signed else (await self.accounts.authenticate(bearer_token(request))).user_id
        try:
            room_id = str(RoomID.parse(room_raw.decode("utf-8"), field="room_id"))
            digest = hash_raw.decode("ascii")
        except (UnicodeDecodeError, SharonError):
            raise NotFound("no such media", "hash") from None
        if user_id is None:
            user_id = self.links.check(request, room_id, digest)
        self._member(room_id, user_id, read=True)  # before any lookup: non-members learn nothing
        record = await self.store.lookup(digest, room_id) if P.is_media_hash(digest) else None
        if record is None:
            raise NotFound("no such media in this room", "hash")
        try:
            file = open(self.store.path_of(digest), "rb")  # noqa: SIM115 - closed by the sender
        except FileNotFoundError:
            log.error("media.file_missing", hash=digest)
            raise NotFound("the file is missing from the store", "hash") from None
        size = os.fstat(file.fileno()).st_size
        raw_range = request.getHeader(b"range")
        try:
            wanted = P.parse_range(raw_range.decode("latin-1") if isinstance(raw_range, bytes) else raw_range, size)
        except P.Unsatisfiable:
            file.close()
            request.setResponseCode(416)
            request.setHeader(b"content-range", f"bytes */{size}".encode())
            request.setHeader(b"accept-ranges", b"bytes")
            write_json(request, 416, {"code": "bad_request", "reason": f"the range is outside the file of {size} bytes",
                                      "field": "range"})
            return
        if request.finished or request._disconnected:  # noqa: SLF001
            file.close()
            return
        request.setHeader(b"content-type", record["mime"].encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", b"default-src 'none'; sandbox")
        request.setHeader(b"cache-control", b"private, max-age=31536000, immutable")
        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"content-disposition",
                          P.content_disposition(record["name"], digest[:16] + P.extension_for(record["mime"])).encode())
        if wanted is None:
            first, last = 0, size - 1
            request.setResponseCode(200)
        else:
            first, last = wanted
            request.setResponseCode(206)
            request.setHeader(b"content-range", f"bytes {first}-{last}/{size}".encode())
        length = last - first + 1
        request.setHeader(b"content-length", str(length).encode())
        if request.method == b"HEAD" or length == 0:
            file.close()
            request.finish()
            return
        file.seek(first)
        _RangeSender(request, file, length).start()

    # -- operations -----------------------------------------------------------------------
    async def list_media(self, conn: Any, req: P.MediaList) -> Dict[str, Any]:
        session = conn.require_session()
        room_id = str(req.room_id)
        self._member(room_id, session.user_id, read=True)
        items, nxt = await self.store.list_room(room_id, _parse_cursor(req.before), req.limit)
        for item in items:
            item["uploader_pseudonym"] = self.accounts.pseudonym_of(item["uploader"])
            if item["name"] is None:
                del item["name"]
        return {"media": items, "next": nxt}

    async def link(self, conn: Any, req: P.MediaLink) -> Dict[str, Any]:
        session = conn.require_session()
        room_id = str(req.room_id)
        self._member(room_id, session.user_id, read=True)
        if await self.store.lookup(req.hash, room_id) is None:
            raise NotFound("no such media in this room", "hash")
        path, expires = self.links.make(room_id, req.hash, session.user_id)
        return {"path": path, "expires_ts": expires}

    async def post(self, conn: Any, req: P.MediaPost) -> Dict[str, Any]:
        session = conn.require_session()
        content: Dict[str, Any] = {"media": {"hash": req.hash}}
        if req.body is not None:
            content["body"] = req.body
        event_id, pos, duplicate = await self.rooms.send_event(
            session, str(req.room_id), P.MEDIA_EVENT, content, txn_id=req.txn_id)
        return {"event_id": event_id, "pos": pos, "duplicate": duplicate}


def install(ctx: Any) -> None:
    """Register the ``ps.media`` type, the operations and the HTTP routes."""
    ttl_s = os.environ.get("SHARON_MEDIA_LINK_TTL_S")
    feature = _Media(ctx, limits_from_env(os.environ),
                     (int(ttl_s) if ttl_s else 4 * 3600) * 1000)
    feature.store.prepare_dirs()
    ctx.rooms.register_event_type(MediaType(feature))
    SITE_BODY_LIMITS[UPLOAD_PATH] = max(feature.limits.values())
    ctx.api_v1.putChild(b"media", _MediaResource(feature))
    register_handlers({P.MediaList: feature.list_media, P.MediaPost: feature.post, P.MediaLink: feature.link})
    ctx.extras["media"] = feature
