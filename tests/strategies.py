"""Hypothesis strategies shared by the pure-layer tests (protocol/, rooms/)."""

from __future__ import annotations

from typing import Any, Dict

from hypothesis import strategies as st

from protocol.b64 import encode_b64url

__all__ = [
    "SAFE_INT",
    "json_ints",
    "json_text",
    "json_scalars",
    "json_values",
    "json_objects",
    "seeds",
    "key_versions",
    "localparts",
    "dns_names",
    "server_names",
    "user_ids",
    "room_ids",
    "event_ids",
    "message_events",
]

SAFE_INT = 2**53 - 1

json_ints = st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)
"""Integers canonical JSON allows, edges included."""

json_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
"""Strings of any valid code point (no lone surrogates), controls and astral ones included."""

json_scalars = st.one_of(st.none(), st.booleans(), json_ints, json_text)

json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(json_text, inner, max_size=5),
    ),
    max_leaves=25,
)
"""Any value of the strict JSON data model."""

json_objects = st.dictionaries(json_text, json_values, max_size=6)
"""JSON objects (what gets signed)."""

seeds = st.binary(min_size=32, max_size=32)
"""Ed25519 seeds."""

key_versions = st.from_regex(r"[a-zA-Z0-9_]{1,10}", fullmatch=True)

localparts = st.from_regex(r"[a-z0-9._=/+\-]{1,20}", fullmatch=True)

_label = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,10}[a-z0-9])?", fullmatch=True)
dns_names = st.lists(_label, min_size=1, max_size=4).map(".".join)

server_names = st.one_of(
    dns_names,
    st.tuples(dns_names, st.integers(1, 65535)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
)

user_ids = st.tuples(localparts, server_names).map(lambda t: f"@{t[0]}:{t[1]}")

_hash_b64url = st.binary(min_size=32, max_size=32).map(encode_b64url)
room_ids = _hash_b64url.map(lambda h: "!" + h)
event_ids = _hash_b64url.map(lambda h: "$" + h)


@st.composite
def message_events(draw: Any) -> Dict[str, Any]:
    """An unsigned, unhashed ``m.room.message`` event in ``ps1`` federation form."""
    return {
        "room_id": draw(room_ids),
        "sender": draw(user_ids),
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": draw(json_text.filter(bool))},
        "prev_events": draw(st.lists(event_ids, min_size=1, max_size=3)),
        "auth_events": draw(st.lists(event_ids, max_size=3)),
        "depth": draw(st.integers(1, SAFE_INT)),
        "origin_server_ts": draw(st.integers(0, SAFE_INT)),
        "signatures": {},
        "hashes": {},
    }
