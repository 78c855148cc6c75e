"""Unpadded base64, standard and URL-safe (APX #unpadded-base64, federation.md §9.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.b64 import decode_b64, decode_b64url, encode_b64, encode_b64url
from protocol.errors import BadField

APPENDIX = [(b"", ""), (b"f", "Zg"), (b"fo", "Zm8"), (b"foo", "Zm9v"), (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"), (b"foobar", "Zm9vYmFy")]  # fmt: skip


@pytest.mark.parametrize("raw, encoded", APPENDIX)
def test_appendix_vectors(raw: bytes, encoded: str) -> None:
    assert encode_b64(raw) == encoded
    assert decode_b64(encoded) == raw
    assert encode_b64url(raw) == encoded  # no + or / in these


@pytest.mark.parametrize("padded, raw", [("Zg==", b"f"), ("Zm8=", b"fo"), ("Zm9v", b"foo"), ("", b"")])
def test_padded_input_is_accepted(padded: str, raw: bytes) -> None:
    assert decode_b64(padded) == raw
    assert decode_b64url(padded) == raw


def test_alphabets_differ() -> None:
    raw = b"\xfb\xff\xbf"
    assert encode_b64(raw) == "+/+/"
    assert encode_b64url(raw) == "-_-_"
    assert decode_b64url("-_-_") == raw
    with pytest.raises(BadField):
        decode_b64("-_-_")
    with pytest.raises(BadField):
        decode_b64url("+/+/")


def test_non_zero_trailing_bits_are_tolerated() -> None:
    # The appendix signing seed itself ends in "A1", which has non-zero trailing bits.
    assert decode_b64("Zh") == decode_b64("Zg") == b"f"


@pytest.mark.parametrize(
    "garbage",
    ["Z", "Zm9vY", "Zg=", "Zg===", "Zm9v=", "====", "Zm9v\n", " Zm9v", "Zm 9v", "Zm9v!", "Zg=a", "Ω", "Zm9v\x00"],
)
def test_garbage_is_rejected(garbage: str) -> None:
    with pytest.raises(BadField) as info:
        decode_b64(garbage, "sig")
    assert info.value.field == "sig"
    with pytest.raises(BadField):
        decode_b64url(garbage)


@pytest.mark.parametrize("not_text", [b"Zm9v", None, 12])
def test_non_str_is_rejected(not_text: object) -> None:
    with pytest.raises(BadField):
        decode_b64(not_text)  # type: ignore[arg-type]


@given(st.binary(max_size=100))
def test_round_trip(raw: bytes) -> None:
    assert decode_b64(encode_b64(raw)) == raw
    assert decode_b64url(encode_b64url(raw)) == raw
    assert "=" not in encode_b64(raw) + encode_b64url(raw)
