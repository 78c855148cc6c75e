"""Unpadded base64 (APX #unpadded-base64): standard alphabet for keys, hashes and signatures,
URL-safe alphabet for event and room IDs.

Encoders never pad.  Decoders accept padded and unpadded input but nothing else: no
whitespace, no characters from the other alphabet, no impossible lengths.
"""

from __future__ import annotations

import base64
import binascii
import re

from protocol.errors import BadField

__all__ = ["encode_b64", "decode_b64", "encode_b64url", "decode_b64url"]

_STD_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_RE = re.compile(r"[A-Za-z0-9_\-]*={0,2}")
_URL_TO_STD = str.maketrans("-_", "+/")


def encode_b64(data: bytes) -> str:
    """Unpadded standard base64 of ``data``."""
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def encode_b64url(data: bytes) -> str:
    """Unpadded URL-safe base64 of ``data`` (``-`` and ``_`` instead of ``+`` and ``/``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: object, field: str, pattern: "re.Pattern[str]", alphabet: str) -> bytes:
    """Shared decoder: validate shape with ``pattern``, then decode as standard base64."""
    if type(text) is not str:
        raise BadField(f"{field} must be a base64 string", field)
    if pattern.fullmatch(text) is None:
        raise BadField(f"{field} is not {alphabet} base64", field)
    body = text.rstrip("=")
    if len(text) != len(body) and len(text) % 4 != 0:
        raise BadField(f"{field} has wrong base64 padding", field)
    if len(body) % 4 == 1:
        raise BadField(f"{field} has an impossible base64 length", field)
    padded = body + "=" * (-len(body) % 4)
    if alphabet == "URL-safe":
        padded = padded.translate(_URL_TO_STD)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:  # pragma: no cover - the checks above should make this unreachable
        raise BadField(f"{field} is not valid base64", field) from None


def decode_b64(text: str, field: str = "base64") -> bytes:
    """Decode standard base64, padded or not; raises BadField naming ``field`` on garbage."""
    return _decode(text, field, _STD_RE, "standard")


def decode_b64url(text: str, field: str = "base64") -> bytes:
    """Decode URL-safe base64, padded or not; raises BadField naming ``field`` on garbage."""
    return _decode(text, field, _URL_RE, "URL-safe")
