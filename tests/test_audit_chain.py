"""The audit chain's arithmetic (rooms/audit_chain.py): hashing, verification, anchors."""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.canonical_json import encode_canonical
from protocol.errors import BadJSON
from rooms.audit_chain import (
    DOMAIN,
    GENESIS_PREV,
    ChainVerifier,
    entry_hash,
    format_head,
    parse_head,
    verify_chain,
)

Entry = Dict[str, Any]

_text = st.text(min_size=1, max_size=12)
_opt_text = st.one_of(st.none(), _text)
_details = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53 - 1), 2**53 - 1), st.text(max_size=8),
              st.lists(st.integers(0, 9), max_size=3)),
    max_size=4,
)
"""Small JSON objects (the full data model is covered by test_canonical_json.py)."""

raw_entries = st.fixed_dictionaries(
    {
        "ts": st.integers(min_value=0, max_value=2**53 - 1),
        "actor": _text,
        "action": _text,
        "member": _opt_text,
        "service": _opt_text,
        "details": _details,
    }
)

logs = st.lists(raw_entries, min_size=1, max_size=8)


def build(raw: List[Entry], genesis: bytes = GENESIS_PREV) -> List[Entry]:
    """Chain raw entries: seq 1.., prev_hash and hash filled in (as the server stores them)."""
    out: List[Entry] = []
    prev = genesis
    for i, r in enumerate(raw, start=1):
        e = dict(r, seq=i)
        h = entry_hash(prev, e)
        out.append(dict(e, prev_hash=prev, hash=h))
        prev = h
    return out


def head_of(chain: List[Entry]) -> tuple:
    return (chain[-1]["seq"], chain[-1]["hash"]) if chain else (0, GENESIS_PREV)


# --- the hash -----------------------------------------------------------------------------


def _sample(**over: Any) -> Entry:
    e = {"seq": 1, "ts": 1_700_000_000_000, "actor": "@mod:example.org", "action": "unmask.request",
         "member": "@uabc:example.org", "service": "eating-disorders", "details": {"reason": "risk"}}
    e.update(over)
    return e


def test_entry_hash_is_domain_separated_canonical_sha256() -> None:
    e = _sample()
    payload = dict(e, prev=GENESIS_PREV.hex())
    assert entry_hash(GENESIS_PREV, e) == hashlib.sha256(DOMAIN + encode_canonical(payload)).digest()
    assert entry_hash(GENESIS_PREV, e) != hashlib.sha256(encode_canonical(payload)).digest()


def test_entry_hash_golden_value() -> None:
    """The format is frozen: a change here invalidates every stored chain."""
    assert entry_hash(GENESIS_PREV, _sample()).hex() == GOLDEN


GOLDEN = "319ed996dd293942d560e50624bb430f331a9ecc75957cfa257b5a29c1aa3f89"


def test_entry_hash_ignores_extra_keys_and_covers_prev() -> None:
    e = _sample()
    assert entry_hash(GENESIS_PREV, dict(e, hash=b"x", prev_hash=b"y")) == entry_hash(GENESIS_PREV, e)
    assert entry_hash(b"\x01" * 32, e) != entry_hash(GENESIS_PREV, e)


@pytest.mark.parametrize(
    "over",
    [{"seq": -1}, {"seq": True}, {"ts": "1"}, {"actor": ""}, {"action": None}, {"member": 5},
     {"service": b"s"}, {"details": []}, {"details": None}],
)
def test_entry_hash_rejects_malformed_entries(over: Entry) -> None:
    with pytest.raises(ValueError):
        entry_hash(GENESIS_PREV, _sample(**over))


def test_entry_hash_rejects_bad_prev_and_non_json_details() -> None:
    with pytest.raises(ValueError):
        entry_hash(b"short", _sample())
    with pytest.raises(BadJSON):
        entry_hash(GENESIS_PREV, _sample(details={"x": 1.5}))


# --- verification -------------------------------------------------------------------------


def test_empty_chain_is_ok() -> None:
    r = verify_chain([])
    assert r.ok and r.checked == 0 and r.head == format_head(0, GENESIS_PREV)


@settings(max_examples=80, deadline=None)
@given(logs)
def test_random_logs_verify(raw: List[Entry]) -> None:
    chain = build(raw)
    r = verify_chain(chain)
    assert r.ok and r.checked == len(chain) and r.first_bad_seq is None and r.reason is None
    assert (r.head_seq, r.head_hash) == head_of(chain)
    assert verify_chain(chain, expect_head=head_of(chain)).ok
    # Any earlier anchor also holds (the log only grew since).
    k = len(chain) // 2
    assert verify_chain(chain, expect_head=head_of(chain[:k])).ok


_FIELD_VALUES = {
    "seq": st.integers(min_value=0, max_value=2**53 - 1),
    "ts": st.integers(min_value=0, max_value=2**53 - 1),
    "actor": _text,
    "action": _text,
    "member": _opt_text,
    "service": _opt_text,
    "details": _details,
    "prev_hash": st.binary(min_size=32, max_size=32),
    "hash": st.binary(min_size=32, max_size=32),
}


@settings(max_examples=200, deadline=None)
@given(logs, st.data())
def test_editing_any_field_of_any_entry_is_detected(raw: List[Entry], data: st.DataObject) -> None:
    chain = build(raw)
    k = data.draw(st.integers(min_value=0, max_value=len(chain) - 1), label="entry")
    field = data.draw(st.sampled_from(sorted(_FIELD_VALUES)), label="field")
    new = data.draw(_FIELD_VALUES[field], label="value")
    old = chain[k][field]
    assume(new != old or type(new) is not type(old))
    chain[k] = dict(chain[k], **{field: new})
    r = verify_chain(chain)
    assert not r.ok
    assert r.first_bad_seq == k + 1
    assert r.reason == "edited"
    assert r.checked == k and r.head_seq == k


@settings(max_examples=80, deadline=None)
@given(st.lists(raw_entries, min_size=2, max_size=8), st.data())
def test_deleting_any_entry_is_detected(raw: List[Entry], data: st.DataObject) -> None:
    chain = build(raw)
    anchor = head_of(chain)
    k = data.draw(st.integers(min_value=0, max_value=len(chain) - 1), label="deleted")
    del chain[k]
    r = verify_chain(chain, expect_head=anchor)
    assert not r.ok
    if k == len(chain):  # the tail: only the anchor sees it
        assert r.reason == "truncated" and r.first_bad_seq == anchor[0]
        assert verify_chain(chain).ok
    else:
        assert r.reason == "deleted or reordered" and r.first_bad_seq == k + 1
        assert verify_chain(chain) == r


@settings(max_examples=80, deadline=None)
@given(st.lists(raw_entries, min_size=2, max_size=8), st.data())
def test_swapping_any_two_entries_is_detected(raw: List[Entry], data: st.DataObject) -> None:
    chain = build(raw)
    i = data.draw(st.integers(min_value=0, max_value=len(chain) - 2), label="i")
    j = data.draw(st.integers(min_value=i + 1, max_value=len(chain) - 1), label="j")
    chain[i], chain[j] = chain[j], chain[i]
    r = verify_chain(chain)
    assert not r.ok and r.first_bad_seq == i + 1 and r.reason == "deleted or reordered"


@settings(max_examples=60, deadline=None)
@given(st.lists(raw_entries, min_size=2, max_size=8), st.data())
def test_swapping_contents_but_keeping_seq_is_detected(raw: List[Entry], data: st.DataObject) -> None:
    """What swapping two database rows' contents (seq is the key) looks like."""
    chain = build(raw)
    i = data.draw(st.integers(min_value=0, max_value=len(chain) - 2), label="i")
    j = data.draw(st.integers(min_value=i + 1, max_value=len(chain) - 1), label="j")
    a, b = chain[i], chain[j]
    chain[i], chain[j] = dict(b, seq=a["seq"]), dict(a, seq=b["seq"])
    r = verify_chain(chain)
    assert not r.ok and r.first_bad_seq == i + 1 and r.reason == "edited"


@settings(max_examples=60, deadline=None)
@given(logs, st.binary(min_size=32, max_size=32))
def test_bad_genesis(raw: List[Entry], genesis: bytes) -> None:
    assume(genesis != GENESIS_PREV)
    r = verify_chain(build(raw, genesis))
    assert not r.ok and r.first_bad_seq == 1 and r.reason == "bad genesis" and r.checked == 0


@settings(max_examples=60, deadline=None)
@given(logs, st.data())
def test_rewrite_with_recomputed_hashes_needs_the_anchor(raw: List[Entry], data: st.DataObject) -> None:
    """An attacker who edits an entry and re-hashes everything after it fools the chain alone."""
    chain = build(raw)
    anchor = head_of(chain)
    k = data.draw(st.integers(min_value=0, max_value=len(chain) - 1), label="entry")
    forged = [dict(e) for e in raw]
    forged[k]["action"] = forged[k]["action"] + "!"
    rewritten = build(forged)
    assert verify_chain(rewritten).ok
    r = verify_chain(rewritten, expect_head=anchor)
    assert not r.ok and r.reason == "head mismatch" and r.first_bad_seq == anchor[0]


def test_truncating_everything_is_caught_by_the_anchor() -> None:
    chain = build([dict(_sample(), seq=None) for _ in range(3)])
    r = verify_chain([], expect_head=head_of(chain))
    assert not r.ok and r.reason == "truncated" and r.first_bad_seq == 3 and r.checked == 0


def test_verifier_stops_at_the_first_break() -> None:
    chain = build([dict(_sample(), seq=None) for _ in range(5)])
    chain[1] = dict(chain[1], ts=1)
    chain[3] = dict(chain[3], ts=1)
    v = ChainVerifier()
    fed = [v.feed(e) for e in chain]
    assert fed == [True, False, False, False, False]
    r = v.result()
    assert (r.ok, r.checked, r.first_bad_seq, r.reason) == (False, 1, 2, "edited")


def test_entries_with_missing_or_garbage_fields_count_as_edited() -> None:
    chain = build([dict(_sample(), seq=None) for _ in range(2)])
    broken = dict(chain[1])
    del broken["details"]
    assert verify_chain([chain[0], broken]).reason == "edited"
    assert verify_chain([chain[0], dict(chain[1], hash="00" * 32)]).reason == "edited"
    assert verify_chain([chain[0], dict(chain[1], details='{"reason":"risk"}')]).reason == "edited"


def test_head_text_round_trip() -> None:
    h = hashlib.sha256(b"x").digest()
    assert parse_head(format_head(42, h)) == (42, h)
    for bad in ("42", "42:abc", "x:" + "00" * 32, "-1:" + "00" * 32, "42:" + "zz" * 32, "²:" + "00" * 32):
        with pytest.raises(ValueError):
            parse_head(bad)


def test_expect_head_validation() -> None:
    with pytest.raises(ValueError):
        ChainVerifier((1, b"short"))
    assert verify_chain([], expect_head=(0, GENESIS_PREV)).ok
    r = verify_chain([], expect_head=(0, b"\x01" * 32))
    assert not r.ok and r.reason == "head mismatch"
