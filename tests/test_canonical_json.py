"""Canonical JSON encoder and strict decoder (federation.md §2.1–2.2, §9.1)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import assume, given

from protocol.canonical_json import (
    MAX_DEPTH, check_json_value, decode_strict, encode_around, encode_canonical, encode_checked, encode_value,
)
from protocol.errors import BadJSON, BadMsgpack
from tests.strategies import json_objects, json_text, json_values

# The Matrix appendix #canonical-json examples: (input JSON text, canonical output).
APPENDIX_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        '{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe",'
        ' "three_pids": [{"medium": "email", "address": "john.doe@example.org"},'
        ' {"medium": "msisdn", "address": "123456789"}]}}}',
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        '"success":true}}',
    ),
    ('{"a": "日本語"}', '{"a":"日本語"}'),
    ('{"本": 2, "日": 1}', '{"日":1,"本":2}'),
    ('{"a": "\\u65E5"}', '{"a":"日"}'),
    ('{"a": null}', '{"a":null}'),
]


@pytest.mark.parametrize("text, expected", APPENDIX_EXAMPLES)
def test_appendix_examples(text: str, expected: str) -> None:
    assert encode_canonical(decode_strict(text.encode("utf-8"))) == expected.encode("utf-8")


def test_keys_sort_by_code_point_not_utf16() -> None:
    # U+FB01 < U+1F600 by code point; UTF-16 ordering (JCS, JavaScript) would swap them.
    assert encode_canonical({"\U0001F600": 2, "\ufb01": 1}) == '{"\ufb01":1,"\U0001F600":2}'.encode("utf-8")


def test_minimal_string_escapes() -> None:
    value = {"s": "\"\\\b\f\n\r\t\x00\x01\x1f/\x7f\u2028\u2029é"}
    expected = '{"s":"\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f/\x7f\u2028\u2029é"}'
    assert encode_canonical(value) == expected.encode("utf-8")


def test_no_unicode_normalisation() -> None:
    nfc, nfd = "\u00e9", "e\u0301"
    out = encode_canonical({nfc: 1, nfd: 2})
    assert decode_strict(out) == {nfc: 1, nfd: 2}
    assert nfc.encode() in out and nfd.encode() in out


def test_integer_edges_encode() -> None:
    assert encode_canonical([2**53 - 1, -(2**53 - 1), 0]) == b"[9007199254740991,-9007199254740991,0]"


def test_minus_zero_is_normalised_to_zero() -> None:
    # Documented decision: -0 is the integer 0 for every decoder, so it is accepted and re-encoded as 0.
    assert decode_strict(b'{"a":-0}') == {"a": 0}
    assert encode_canonical(decode_strict(b'{"a":-0}')) == b'{"a":0}'


def test_decode_accepts_str_and_whitespace() -> None:
    assert decode_strict(' \t\r\n{"a" : [1 , true , null]}\n ') == {"a": [1, True, None]}


@pytest.mark.parametrize(
    "data, why",
    [
        (b'{"a":1.0}', "floats"),
        (b'{"a":1e10}', "floats and exponents"),
        (b'{"a":1E2}', "floats and exponents"),
        (b'{"a":-0.0}', "floats"),
        (b"NaN", "NaN"),
        (b"[Infinity]", "Infinity"),
        (b"[-Infinity]", "Infinity"),
        (b"9007199254740992", "outside"),
        (b"-9007199254740992", "outside"),
        (b"1" * 5000, "outside"),
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"x":{"a":1,"b":2,"a":1}}', "duplicate key"),
        (b'"\\ud800"', "lone surrogates"),
        (b'{"\\udc00":1}', "lone surrogates"),
        (b'["\\ud83d"]', "lone surrogates"),
        (b"\xff", "invalid UTF-8"),
        (b'"\xed\xa0\x80"', "invalid UTF-8"),  # a surrogate encoded as UTF-8 bytes
        (b'"\xc0\xaf"', "invalid UTF-8"),  # overlong
        (b"\xef\xbb\xbf{}", "malformed"),  # BOM
        (b"", "malformed"),
        (b"{} {}", "malformed"),
        (b"[1,]", "malformed"),
        (b"{'a':1}", "malformed"),
        (b"01", "malformed"),
        (b'"\x01"', "malformed"),  # raw control character in a string
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_decode_rejects(data: bytes, why: str) -> None:
    with pytest.raises(BadJSON) as info:
        decode_strict(data)
    assert why in info.value.reason
    assert info.value.code == "bad_json"


def test_decode_rejects_raw_lone_surrogate_in_str_input() -> None:
    with pytest.raises(BadJSON, match="lone surrogates"):
        decode_strict('["\ud800"]')


def test_decode_rejects_deep_nesting_within_recursion_limit() -> None:
    text = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(BadJSON, match="nested deeper"):
        decode_strict(text)
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert encode_canonical(decode_strict(ok)) == ok.encode()


def test_decode_rejects_non_text() -> None:
    with pytest.raises(BadJSON):
        decode_strict(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value, field",
    [
        ({"a": 1.5}, "a"),
        ({"a": float("nan")}, "a"),
        ({"a": [1, 2**53]}, "a[1]"),
        ({"a": -(2**53)}, "a"),
        ({1: "x"}, None),
        ({True: "x"}, None),
        ({"a": {"b": (1, 2)}}, "a.b"),
        ({"a": b"bytes"}, "a"),
        ({"a": {"b", "c"}}, "a"),
        ({"a": "\udfff"}, "a"),
        ({"\ud800": 1}, None),
        (object(), None),
    ],
)
def test_encode_rejects(value: object, field: object) -> None:
    with pytest.raises(BadJSON) as info:
        encode_canonical(value)
    assert info.value.field == field


def test_encode_rejects_cycles() -> None:
    cyclic: dict = {}
    cyclic["a"] = cyclic
    with pytest.raises(BadJSON, match="nested deeper"):
        encode_canonical(cyclic)


def test_bool_is_not_int_but_is_allowed() -> None:
    assert encode_canonical([True, False, 1, 0]) == b"[true,false,1,0]"


def test_check_json_value_prefixes_field_and_uses_error_class() -> None:
    with pytest.raises(BadMsgpack) as info:
        check_json_value({"body": [1, 2.0]}, "content", error=BadMsgpack)
    assert info.value.field == "content.body[1]"
    assert "floats" in info.value.reason
    check_json_value({"ok": [None, True, -1, "x"]}, "content")


def test_long_field_paths_are_truncated() -> None:
    with pytest.raises(BadJSON) as info:
        check_json_value({"k" * 1000: 1.0})
    assert info.value.field is not None and len(info.value.field) <= 100


@given(json_values)
def test_round_trip(value: object) -> None:
    assert decode_strict(encode_canonical(value)) == value


@given(json_values)
def test_encode_is_idempotent(value: object) -> None:
    once = encode_canonical(value)
    assert encode_canonical(decode_strict(once)) == once


@given(json_values)
def test_encoding_is_independent_of_formatting_and_key_order(value: object) -> None:
    loose = json.dumps(value, ensure_ascii=True, indent=2)
    assert encode_canonical(decode_strict(loose)) == encode_canonical(value)


def _reference(value: object) -> bytes:
    """Python's own json, configured as canonical JSON: the reference the fast path must match."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode("utf-8")


@given(json_values)
def test_the_fast_encoder_is_byte_identical_to_the_reference(value: object) -> None:
    # orjson encodes what is hashed and signed: one differing byte would split a room
    assert encode_canonical(value) == _reference(value)
    assert encode_value(value).encode("utf-8") == _reference(value)


@given(json_objects, json_text)
def test_objects_assembled_around_a_member_match_the_reference(value: dict, key: str) -> None:
    assume(key not in value)
    head, tail = encode_around(value, key)  # the member assembled later, wherever it sorts
    assert head + b'"\\u0000"' + tail == _reference({**value, key: "\x00"})
    assert encode_checked(value) == _reference(value)


def test_nesting_beyond_the_fast_encoders_limit_falls_back_to_the_reference() -> None:
    deep: object = "x"
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    check_json_value(deep)
    with pytest.raises(orjson.JSONEncodeError):  # so this really takes the fallback
        orjson.dumps(deep)
    assert encode_canonical(deep) == _reference(deep)
    assert encode_value({"a": deep[0]}) == _reference({"a": deep[0]}).decode("utf-8")
    head, tail = encode_around({"a": deep[0]}, "b")
    assert head + b"1" + tail == _reference({"a": deep[0], "b": 1})
