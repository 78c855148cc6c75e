"""Media (pure): content sniffing, size limits, byte ranges, safe file names, request types.

A media file's type is decided only by its first bytes (``sniff``), never by its name or
the Content-Type the client sent. Every accepted type falls in one category, and each
category has its own size limit. Files are addressed by the SHA-256 of their content
(``is_media_hash``); a post of one in a room is a ``ps.media`` event (docs/protocol.md §8.4).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import attr

from protocol.errors import BadField
from protocol.frames import RequestId, read_int, read_room_id, read_str, register_request
from protocol.ids import RoomID

__all__ = [
    "MEDIA_EVENT", "CATEGORIES", "DEFAULT_LIMITS", "SNIFF_BYTES", "MAX_NAME_CHARS",
    "sniff", "is_media_hash", "parse_range", "Unsatisfiable", "safe_filename", "content_disposition",
    "extension_for", "MediaList", "MediaPost", "MediaLink",
]

MEDIA_EVENT = "ps.media"
"""The event type of a media post: ``{"media": {hash, mime, category, size, name?}, "body"?}``."""

CATEGORIES = ("image", "audio", "video")

MiB = 1024 * 1024
DEFAULT_LIMITS: Dict[str, int] = {"image": 10 * MiB, "audio": 100 * MiB, "video": 500 * MiB}
"""Largest accepted file per category, in bytes (the server may override them)."""

SNIFF_BYTES = 4096
"""How many leading bytes ``sniff`` needs to decide (it copes with fewer)."""

MAX_NAME_CHARS = 255

Sniffed = Tuple[str, str]
"""``(mime type, category)``."""

# ISO base media (MP4 family) major and compatible brands we accept, by what they hold.
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_VIDEO_BRANDS = frozenset({
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9",
    b"mp41", b"mp42", b"avc1", b"M4V ", b"M4VH", b"M4VP", b"F4V ", b"f4v ", b"dash", b"mmp4",
    b"3gp4", b"3gp5", b"3gp6", b"3gp7", b"3g2a", b"3g2b", b"3g2c", b"MSNV", b"NDSC", b"NDXC",
})
_QUICKTIME_BRAND = b"qt  "
_STILL_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"miaf"})

# MPEG audio frame header tables (version bits -> usable) for the frame-sync check.
_MPEG_LAYERS = {0b01: 3, 0b10: 2, 0b11: 1}


def _ftyp(head: bytes) -> Optional[Sniffed]:
    """MP4 / M4A / MOV: a leading ``ftyp`` box; the brands say whether it is audio or video."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    if box_size < 16:
        return None
    major = head[8:12]
    end = min(len(head), box_size)
    compatible = [head[i:i + 4] for i in range(16, end - 3, 4)]
    if major in _STILL_BRANDS or any(b in _STILL_BRANDS for b in compatible):
        return None  # HEIF/AVIF stills look like MP4 but are images we do not take
    if major in _AUDIO_BRANDS:
        return "audio/mp4", "audio"
    if major == _QUICKTIME_BRAND:
        return "video/quicktime", "video"
    if major in _VIDEO_BRANDS:
        return "video/mp4", "video"
    # An unknown major brand is accepted only on the strength of a compatible brand we know.
    if any(b in _AUDIO_BRANDS for b in compatible) and not any(b in _VIDEO_BRANDS for b in compatible):
        return "audio/mp4", "audio"
    if any(b in _VIDEO_BRANDS for b in compatible):
        return "video/mp4", "video"
    return None


def _ebml(head: bytes) -> Optional[Sniffed]:
    """WebM / Matroska: the EBML magic; the DocType names which (both served as video)."""
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    window = head[:256]
    at = window.find(b"\x42\x82")  # the DocType element, then its size, then the name
    if at >= 0:
        doctype = window[at + 2:at + 14]
        if b"webm" in doctype:
            return "video/webm", "video"
        if b"matroska" in doctype:
            return "video/x-matroska", "video"
    return None


def _mpeg_frame(head: bytes, at: int) -> bool:
    """True if a plausible MPEG-1/2 audio frame header starts at ``at``."""
    if len(head) < at + 4:
        return False
    b1, b2 = head[at + 1], head[at + 2]
    if head[at] != 0xFF or (b1 & 0xE0) != 0xE0:
        return False
    version = (b1 >> 3) & 0b11
    layer = (b1 >> 1) & 0b11
    bitrate = (b2 >> 4) & 0x0F
    rate = (b2 >> 2) & 0b11
    return version != 0b01 and layer in _MPEG_LAYERS and bitrate not in (0, 0x0F) and rate != 0b11


def _mp3(head: bytes) -> Optional[Sniffed]:
    """MP3: an ID3v2 tag, or an MPEG audio frame sync at the start."""
    if len(head) >= 10 and head.startswith(b"ID3") and head[3] in (2, 3, 4) and head[4] != 0xFF \
            and all(b < 0x80 for b in head[6:10]):
        return "audio/mpeg", "audio"
    if _mpeg_frame(head, 0):
        return "audio/mpeg", "audio"
    return None


def sniff(head: bytes) -> Optional[Sniffed]:
    """``(mime, category)`` of a file from its first bytes (at least ``SNIFF_BYTES`` if it
    has them), or None for anything we do not accept. Never raises for any input bytes."""
    if type(head) is not bytes:
        head = bytes(head)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "image"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "image"
    if head.startswith(b"GIF87a") or head.startswith(b"GIF89a"):
        return "image/gif", "image"
    if len(head) >= 12 and head.startswith(b"RIFF"):
        form = head[8:12]
        if form == b"WEBP":
            return "image/webp", "image"
        if form == b"WAVE":
            return "audio/wav", "audio"
        return None
    if head.startswith(b"fLaC"):
        return "audio/flac", "audio"
    if head.startswith(b"OggS\x00"):
        return "audio/ogg", "audio"
    for check in (_ftyp, _ebml, _mp3):
        found = check(head)
        if found is not None:
            return found
    return None


_EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
    "audio/mp4": ".m4a", "audio/mpeg": ".mp3", "audio/ogg": ".ogg", "audio/wav": ".wav",
    "audio/flac": ".flac", "video/mp4": ".mp4", "video/quicktime": ".mov", "video/webm": ".webm",
    "video/x-matroska": ".mkv",
}


def extension_for(mime: str) -> str:
    """The usual file extension for a sniffed type (``""`` if unknown)."""
    return _EXTENSIONS.get(mime, "")


def is_media_hash(value: Any) -> bool:
    """True for a content address: 64 lower-case hex digits (SHA-256)."""
    return type(value) is str and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class Unsatisfiable(Exception):
    """A Range header none of whose ranges overlaps the file (HTTP 416)."""


def parse_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """The single byte range ``(first, last)`` (inclusive) a Range header asks for.

    None means "send the whole file with 200": no header, a syntactically invalid one, or
    several ranges (which RFC 9110 §14.2 lets a server ignore). Supports ``bytes=a-b``,
    ``bytes=a-`` and ``bytes=-n``. Raises ``Unsatisfiable`` when the range starts at or past
    the end of the file, or asks for an empty suffix.
    """
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not dash or (first_s and not first_s.isdigit()) or (last_s and not last_s.isdigit()) \
            or not (first_s or last_s) or not (first_s.isascii() and last_s.isascii()):
        return None
    if not first_s:
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - suffix), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid syntax: ignore the header
    if first >= size:
        raise Unsatisfiable()
    return first, min(int(last_s), size - 1) if last_s else size - 1


_SAFE_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._- ")
_ATTR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&+-.^_`|~")


def safe_filename(name: Optional[str], fallback: str) -> str:
    """A file name safe to put in a header or on a disk: no paths, quotes or controls."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c if c.isprintable() and c not in '"/\\:*?<>|;' else "_" for c in base).strip(" .")
    return cleaned[:MAX_NAME_CHARS] or fallback


def content_disposition(name: Optional[str], fallback: str) -> str:
    """``inline`` with an ASCII ``filename`` and the exact name as RFC 8187 ``filename*``."""
    safe = safe_filename(name, fallback)
    ascii_name = "".join(c if c in _SAFE_ASCII else "_" for c in safe)
    encoded = "".join(chr(b) if chr(b) in _ATTR_CHARS else f"%{b:02X}" for b in safe.encode("utf-8"))
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


# --------------------------------------------------------------------------- requests

_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class MediaList:
    """``media``: a room's uploaded media, newest first (members only)."""

    id: RequestId
    room_id: RoomID
    before: Optional[str]
    limit: int


@_frozen
class MediaPost:
    """``media_post``: post an uploaded file in a room as a ``ps.media`` event."""

    id: RequestId
    room_id: RoomID
    hash: str
    body: Optional[str]
    txn_id: Optional[str]


@_frozen
class MediaLink:
    """``media_link``: a short-lived signed URL for players that cannot send a header."""

    id: RequestId
    room_id: RoomID
    hash: str


def _hash(frame: Dict[str, Any]) -> str:
    value = read_str(frame, "hash")
    if not is_media_hash(value):
        raise BadField("hash must be 64 lower-case hex digits (the SHA-256 the upload returned)", "hash")
    return value


register_request("media", lambda f, rid: MediaList(
    rid, read_room_id(f), read_str(f, "before", min_len=1, max_len=128, optional=True),
    read_int(f, "limit", 50, 1, 100)))
register_request("media_link", lambda f, rid: MediaLink(rid, read_room_id(f), _hash(f)))
register_request("media_post", lambda f, rid: MediaPost(
    rid, read_room_id(f), _hash(f), read_str(f, "body", min_len=1, optional=True),
    read_str(f, "txn_id", min_len=1, max_len=64, optional=True)))
