"""Strict canonical JSON: the only form that is hashed and signed (federation.md §2.1–2.2).

The JSON data model here is exactly: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``
in ±(2**53−1), ``bool`` and ``None`` (exact types, so ``bool`` never passes as ``int`` and
``tuple`` or ``float`` never slip through).  Strings must be valid Unicode (no lone
surrogates).  No Unicode normalisation is ever applied.

Decisions:

- ``-0`` is **normalised**, not rejected: it is an integer literal every decoder reads as
  the value ``0`` (no decoder disagrees, so it cannot split a room), and canonical
  re-encoding writes ``0``.  ``1e10``, ``1.0``, ``NaN`` and ``Infinity`` are rejected on
  ingest, deliberately deviating from the spec's example that turns ``1e10`` into an integer.
- Nesting deeper than ``MAX_DEPTH`` is rejected: no event needs it, and Python's ``json``
  would otherwise hit its recursion limit (it also stops cyclic structures on encode).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple, Type

from orjson import OPT_SORT_KEYS as _SORT_KEYS
from orjson import JSONEncodeError as _OrjsonEncodeError
from orjson import dumps as _orjson_dumps
from orjson import loads as _orjson_loads

from protocol.errors import BadJSON, SharonError

__all__ = [
    "MAX_SAFE_INT",
    "MAX_DEPTH",
    "encode_canonical",
    "decode_strict",
    "decode_stored",
    "check_json_value",
    "encode_around",
    "encode_checked",
    "encode_value",
]

MAX_SAFE_INT = 2**53 - 1
"""Largest integer magnitude allowed anywhere (inclusive)."""

MAX_DEPTH = 256
"""Deepest allowed nesting of objects and arrays (the top-level value is depth 1)."""

_MAX_INT_DIGITS = len(str(MAX_SAFE_INT))


class _Invalid(Exception):
    """Internal marker: the fast walk found a problem; the slow walk names it."""


def _fast_walk(value: Any) -> None:
    """Raise ``_Invalid`` if ``value`` is outside the data model; no paths, no messages."""
    stack: List[Tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth = pop()
        t = type(v)
        if t is str:
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise _Invalid from None
        elif t is dict:
            if depth >= MAX_DEPTH and v:
                raise _Invalid
            for k, item in v.items():
                if type(k) is not str or (not k.isascii() and not _utf8_ok(k)):
                    raise _Invalid
                push((item, depth + 1))
        elif t is list:
            if depth >= MAX_DEPTH and v:
                raise _Invalid
            for item in v:
                push((item, depth + 1))
        elif t is int:
            if not -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
                raise _Invalid
        elif v is None or t is bool:
            pass
        else:
            raise _Invalid


def _utf8_ok(s: str) -> bool:
    """True if ``s`` encodes as UTF-8 (has no lone surrogate)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_MAX_PATH_CHARS = 100


def _join(path: str, key: str) -> str:
    """Extend a dotted field path with an object key."""
    return f"{path}.{key}" if path else key


def _short(path: str) -> str:
    """A field path cut to a readable length for error reports."""
    return path if len(path) <= _MAX_PATH_CHARS else path[: _MAX_PATH_CHARS - 3] + "..."


def _slow_walk(value: Any, field: str, error: Type[SharonError]) -> None:
    """Raise ``error`` naming the first offending field path; the caller knows there is one."""
    stack: List[Tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        v, path, depth = stack.pop()
        where = _short(path) or None
        name = where or "value"
        t = type(v)
        if t is str:
            if not _utf8_ok(v):
                raise error(f"{name}: strings must not contain lone surrogates", where)
        elif t is dict or t is list:
            if depth >= MAX_DEPTH and v:
                raise error(f"{name}: nested deeper than {MAX_DEPTH} levels", where)
            if t is dict:
                for k, item in v.items():
                    if type(k) is not str:
                        raise error(f"{name}: object keys must be strings, not {type(k).__name__}", where)
                    if not _utf8_ok(k):
                        raise error(f"{name}: object keys must not contain lone surrogates", where)
                    stack.append((item, _join(path, k), depth + 1))
            else:
                for i, item in enumerate(v):
                    stack.append((item, f"{path}[{i}]", depth + 1))
        elif t is int:
            if not -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
                raise error(f"{name}: integers must be within ±(2**53-1)", where)
        elif v is None or t is bool:
            pass
        elif t is float:
            raise error(f"{name}: floats are not allowed, only integers", where)
        else:
            raise error(f"{name}: {t.__name__} is not a JSON value", where)


def check_json_value(value: Any, field: str = "", *, error: Type[SharonError] = BadJSON) -> None:
    """Check ``value`` is in the strict JSON data model; else raise ``error`` naming the path.

    ``field`` prefixes reported paths (``content.body``, ``prev_events[2]``).  ``error`` lets
    the msgpack codec report ``BadMsgpack`` from the same walk.
    """
    try:
        _fast_walk(value)
        return
    except _Invalid:
        pass
    _slow_walk(value, field, error)  # outside the except block: no chained _Invalid
    raise error(f"{field or 'value'} is not in the JSON data model", field or None)  # pragma: no cover


_STDLIB_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                                  allow_nan=False).encode
"""The reference canonical encoder: Python's ``json``, compact, keys sorted by code point,
no escaping beyond ``"``, ``\\`` and control characters."""


def encode_checked(value: Any) -> bytes:
    """Canonical JSON bytes of a value the caller has ALREADY checked (``check_json_value``):
    ``encode_canonical`` without the walk, for values checked once and encoded several
    times (an event's body, its pruned form, its stored form).

    orjson with sorted keys: byte-identical to ``_STDLIB_ENCODE`` on the data model (a
    Hypothesis property in the tests, and the escaping and ordering examples) and about
    eight times faster on an event's content. ``_STDLIB_ENCODE`` takes what orjson refuses:
    nesting over its limit of about 254 levels (``MAX_DEPTH`` allows 256)."""
    try:
        return _orjson_dumps(value, option=_SORT_KEYS)
    except _OrjsonEncodeError:
        pass
    try:
        return _STDLIB_ENCODE(value).encode("utf-8")
    except RecursionError:
        raise BadJSON("value is nested too deeply to encode") from None


def encode_around(obj: Dict[str, Any], key: str) -> Tuple[bytes, bytes]:
    """``(head, tail)`` such that ``head + encode_checked(value) + tail`` is the canonical
    JSON of ``obj`` plus ``key`` (absent from ``obj``) with that value: an object assembled
    later around one member that is not known yet (an event's signature, made off the
    reactor thread). Canonical JSON is compact with keys in code point order, so the members
    before ``key`` and those after it are each encoded as one object and split open.
    ``obj``'s values must have been checked."""
    before = {k: v for k, v in obj.items() if k < key}
    after = {k: v for k, v in obj.items() if k > key}
    head = (encode_checked(before)[:-1] + b"," if before else b"{") + encode_checked(key) + b":"
    tail = b"," + encode_checked(after)[1:] if after else b"}"
    return head, tail


def encode_value(value: Any) -> str:
    """Canonical text of a value the caller has already checked (``check_json_value``)."""
    return encode_checked(value).decode("utf-8")


def decode_stored(raw: bytes) -> Any:
    """Decode JSON that the server itself encoded and stored (an event's canonical bytes).

    orjson: about 3.5x faster than ``json.loads`` on an event (1.1 against 3.9 µs for ~700
    bytes), which is a quarter of a history page's reactor CPU. For stored canonical JSON
    the result is the same (tested); input from clients goes through the checked decoders.
    """
    return _orjson_loads(raw)


def encode_canonical(value: Any) -> bytes:
    """Canonical JSON bytes of ``value`` (UTF-8, sorted keys, compact); raises BadJSON."""
    check_json_value(value)
    return encode_checked(value)


def _reject_float(text: str) -> Any:
    """``parse_float`` hook: fractions and exponents are never allowed."""
    raise BadJSON(f"floats and exponents are not allowed: {text[:40]}")


def _reject_constant(text: str) -> Any:
    """``parse_constant`` hook: NaN, Infinity and -Infinity are never allowed."""
    raise BadJSON(f"{text} is not allowed")


def _parse_int(text: str) -> int:
    """``parse_int`` hook: range-check before converting (huge literals cost quadratic time)."""
    digits = len(text) - (text[0] == "-")
    if digits > _MAX_INT_DIGITS:
        raise BadJSON(f"integer {text[:40]} is outside ±(2**53-1)")
    n = int(text)
    if not -MAX_SAFE_INT <= n <= MAX_SAFE_INT:
        raise BadJSON(f"integer {text} is outside ±(2**53-1)")
    return n  # "-0" becomes 0: see the module docstring.


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> dict:
    """``object_pairs_hook``: build a dict, rejecting repeated keys."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise BadJSON(f"duplicate key {k[:64]!r}", k[:64] if _utf8_ok(k) else None)
            seen.add(k)
    return obj


_DECODER = json.JSONDecoder(
    parse_float=_reject_float,
    parse_int=_parse_int,
    parse_constant=_reject_constant,
    object_pairs_hook=_no_duplicates,
    strict=True,
)


def decode_strict(data: bytes | str) -> Any:
    """Decode strict JSON (bytes must be UTF-8); raises BadJSON with a clear reason.

    Rejects floats, exponents, NaN/Infinity, integers outside ±(2**53−1), duplicate keys,
    lone surrogates (raw or ``\\uD800``-escaped), invalid UTF-8, a BOM and trailing data.
    """
    if type(data) is bytes or isinstance(data, (bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadJSON(f"invalid UTF-8 at byte {e.start}") from None
    elif type(data) is str:
        text = data
    else:
        raise BadJSON(f"cannot decode {type(data).__name__} as JSON")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise BadJSON(f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise BadJSON("JSON is nested too deeply") from None
    check_json_value(value)
    return value
