"""Ed25519 keys, key files and JSON signing (APX #signing-json, federation.md §9.3)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from protocol.b64 import decode_b64, encode_b64
from protocol.canonical_json import encode_canonical
from protocol.errors import BadField, BadSignature
from protocol.signing import SigningKey, VerifyKey, decode_key_file, encode_key_file, sign_json, verify_json
from tests.strategies import json_objects, json_scalars, json_text, json_values, key_versions, seeds

SEED_B64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
PUBLIC_B64 = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
EMPTY_SIG = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
ONE_TWO_SIG = "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"

KEY = SigningKey.from_seed("1", decode_b64(SEED_B64))
signable = json_objects.filter(lambda o: "signatures" not in o and "unsigned" not in o)
KEYS = {KEY.key_id: KEY.verify_key()}


def test_appendix_key() -> None:
    assert KEY.key_id == "ed25519:1"
    assert KEY.public_key_b64() == PUBLIC_B64
    assert KEY.verify_key() == VerifyKey.from_b64("ed25519:1", PUBLIC_B64)


def test_appendix_signatures() -> None:
    assert sign_json({}, "domain", KEY) == {"signatures": {"domain": {"ed25519:1": EMPTY_SIG}}}
    signed = sign_json({"one": 1, "two": "Two"}, "domain", KEY)
    assert signed == {"one": 1, "two": "Two", "signatures": {"domain": {"ed25519:1": ONE_TWO_SIG}}}
    verify_json(signed, "domain", KEYS)


def test_sign_returns_new_dict_keeps_unsigned_and_other_signatures() -> None:
    original = {"a": 1, "unsigned": {"age": 5}, "signatures": {"other": {"ed25519:x": "c2ln"}}}
    before = copy.deepcopy(original)
    signed = sign_json(original, "domain", KEY)
    assert original == before
    assert signed["unsigned"] == {"age": 5}
    assert signed["signatures"]["other"] == {"ed25519:x": "c2ln"}
    # unsigned and foreign signatures are not covered: the appendix {} signature on {"a":1} differs.
    assert signed["signatures"]["domain"]["ed25519:1"] == encode_b64(KEY.sign(b'{"a":1}'))
    verify_json(signed, "domain", KEYS)


def test_two_keys_of_one_entity_merge() -> None:
    key2 = SigningKey.from_seed("2", bytes(range(32)))
    signed = sign_json(sign_json({"x": 1}, "domain", KEY), "domain", key2)
    assert set(signed["signatures"]["domain"]) == {"ed25519:1", "ed25519:2"}
    verify_json(signed, "domain", {**KEYS, key2.key_id: key2.verify_key()})
    verify_json(signed, "domain", KEYS)  # a key we do not hold is ignored


def test_verify_failures() -> None:
    signed = sign_json({"x": 1}, "domain", KEY)
    with pytest.raises(BadSignature, match="not signed by other"):
        verify_json(signed, "other", KEYS)
    with pytest.raises(BadSignature, match="no signatures"):
        verify_json({"x": 1}, "domain", KEYS)
    with pytest.raises(BadSignature, match="known key"):
        verify_json(signed, "domain", {})
    other_key = SigningKey.from_seed("1", b"\x01" * 32)
    with pytest.raises(BadSignature, match="does not verify"):
        verify_json(signed, "domain", {"ed25519:1": other_key.verify_key()})
    garbled = {"x": 1, "signatures": {"domain": {"ed25519:1": "not base64!"}}}
    with pytest.raises(BadSignature, match="not base64"):
        verify_json(garbled, "domain", KEYS)
    short = {"x": 1, "signatures": {"domain": {"ed25519:1": "c2ln"}}}
    with pytest.raises(BadSignature, match="does not verify"):
        verify_json(short, "domain", KEYS)
    with pytest.raises(BadSignature):
        verify_json({"x": 1, "signatures": {"domain": {"ed25519:1": 5}}}, "domain", KEYS)


def test_unknown_algorithms_are_ignored_but_cannot_satisfy() -> None:
    signed = sign_json({"x": 1}, "domain", KEY)
    signed["signatures"]["domain"]["curve9:1"] = "whatever"
    verify_json(signed, "domain", {**KEYS, "curve9:1": KEY.verify_key()})
    only_unknown = {"x": 1, "signatures": {"domain": {"curve9:1": EMPTY_SIG}}}
    with pytest.raises(BadSignature, match="known key"):
        verify_json(only_unknown, "domain", {"curve9:1": KEY.verify_key()})


def test_unsigned_may_change_after_signing() -> None:
    signed = sign_json({"x": 1, "unsigned": {"age": 1}}, "domain", KEY)
    signed["unsigned"] = {"age": 99, "more": [1]}
    verify_json(signed, "domain", KEYS)


def test_sign_rejects_malformed_signatures() -> None:
    with pytest.raises(BadField):
        sign_json({"signatures": []}, "domain", KEY)
    with pytest.raises(BadField):
        sign_json({"signatures": {"a": "b"}}, "domain", KEY)


def test_key_file_round_trip_and_repr_hides_seed() -> None:
    text = encode_key_file(KEY)
    assert text == "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n"  # canonical trailing bits
    assert decode_key_file(text) == KEY
    assert decode_key_file(f"ed25519 1 {SEED_B64}") == KEY
    assert decode_key_file(f"\n  ed25519   1   {SEED_B64}  \n\n") == KEY
    assert SEED_B64[:10] not in repr(KEY) and "seed" not in repr(KEY)


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "exactly one key line"),
        ("ed25519 1 AAAA\ned25519 2 AAAA\n", "exactly one key line"),
        ("ed25519 1\n", "'ed25519 <version> <base64 seed>'"),
        (f"rsa 1 {SEED_B64}\n", "unsupported key algorithm"),
        (f"ed25519 a:b {SEED_B64}\n", "key version"),
        ("ed25519 1 not*base64\n", "base64"),
        ("ed25519 1 Zm9vYmFy\n", "32 bytes"),
    ],
)
def test_key_file_rejects(text: str, why: str) -> None:
    with pytest.raises(BadField) as info:
        decode_key_file(text)
    assert why in info.value.reason
    assert info.value.field == "signing_key"


@pytest.mark.parametrize("version, seed", [("", b"\0" * 32), ("a-b", b"\0" * 32), ("1", b"\0" * 31), ("1", "x" * 32)])
def test_signing_key_validates(version: str, seed: Any) -> None:
    with pytest.raises(BadField):
        SigningKey.from_seed(version, seed)


@pytest.mark.parametrize("key_id, raw", [("ed25519", b"\0" * 32), ("rsa:1", b"\0" * 32), ("ed25519:1", b"\0" * 31)])
def test_verify_key_validates(key_id: str, raw: bytes) -> None:
    with pytest.raises(BadField):
        VerifyKey(key_id, raw)


@given(key_versions, seeds, st.binary(max_size=200))
def test_sign_then_verify_raw(version: str, seed: bytes, message: bytes) -> None:
    key = SigningKey.from_seed(version, seed)
    sig = key.sign(message)
    assert len(sig) == 64
    assert key.verify_key().verify(message, sig)
    assert not key.verify_key().verify(message + b"x", sig)
    assert not key.verify_key().verify(message, sig[:-1] + bytes([sig[-1] ^ 1]))


def _mutate(value: Any, data: st.DataObject) -> Any:
    """A copy of ``value`` with one random change somewhere inside it."""
    if type(value) is dict and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        out = dict(value)
        action = data.draw(st.sampled_from(["descend", "delete"]))
        if action == "delete":
            del out[key]
        else:
            out[key] = _mutate(value[key], data)
        return out
    if type(value) is list and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        out_list = list(value)
        out_list[i] = _mutate(value[i], data)
        return out_list
    if type(value) is dict:
        out = dict(value)
        out[data.draw(json_text)] = data.draw(json_scalars)
        return out
    if type(value) is list:
        return value + [data.draw(json_scalars)]
    return data.draw(json_values)


@given(signable, st.data())
def test_any_tampering_is_detected(obj: dict, data: st.DataObject) -> None:
    signed = sign_json(obj, "domain", KEY)
    body = {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
    tampered_body = _mutate(body, data)
    assume(type(tampered_body) is dict)
    tampered_body = {k: v for k, v in tampered_body.items() if k not in ("signatures", "unsigned")}
    assume(encode_canonical(tampered_body) != encode_canonical(body))
    tampered = dict(tampered_body, signatures=signed["signatures"])
    with pytest.raises(BadSignature):
        verify_json(tampered, "domain", KEYS)


@given(signable)
def test_signed_objects_verify(obj: dict) -> None:
    verify_json(sign_json(obj, "domain", KEY), "domain", KEYS)
