"""Media sniffing, byte ranges and safe names (protocol/media.py, pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import media as P

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00" + b"\x00" * 16
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 16
FLAC = b"fLaC\x00\x00\x00\x22" + b"\x00" * 16
OGG = b"OggS\x00\x02" + b"\x00" * 32
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x21" + b"\x00" * 32
MP3_SYNC = b"\xff\xfb\x90\x64" + b"\x00" * 32  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00\x00\x00\x08free"


WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm"
MKV = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x88matroska"


@pytest.mark.parametrize("data, expected", [
    (PNG, ("image/png", "image")),
    (JPEG, ("image/jpeg", "image")),
    (GIF, ("image/gif", "image")),
    (b"GIF87a" + b"\x00" * 8, ("image/gif", "image")),
    (WEBP, ("image/webp", "image")),
    (WAV, ("audio/wav", "audio")),
    (FLAC, ("audio/flac", "audio")),
    (OGG, ("audio/ogg", "audio")),
    (MP3_ID3, ("audio/mpeg", "audio")),
    (MP3_SYNC, ("audio/mpeg", "audio")),
    (ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), ("audio/mp4", "audio")),
    (ftyp(b"M4B "), ("audio/mp4", "audio")),
    (ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), ("video/mp4", "video")),
    (ftyp(b"mp42", b"mp42", b"isom"), ("video/mp4", "video")),
    (ftyp(b"qt  ", b"qt  "), ("video/quicktime", "video")),
    (ftyp(b"XYZW", b"M4A "), ("audio/mp4", "audio")),
    (ftyp(b"XYZW", b"isom"), ("video/mp4", "video")),
    (WEBM, ("video/webm", "video")),
    (MKV, ("video/x-matroska", "video")),
])
def test_known_types_are_recognised(data, expected):
    assert P.sniff(data) == expected


@pytest.mark.parametrize("data", [
    b"", b"hello, this is a text file pretending to be a picture\n", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    b"<html><script>alert(1)</script>", b"%PDF-1.7\n", b"PK\x03\x04zip", b"RIFF\x24\x00\x00\x00AVI LIST",
    ftyp(b"heic", b"mif1", b"heic"), ftyp(b"avif", b"avif", b"mif1", b"miaf"), ftyp(b"XYZW", b"ABCD"),
    b"\x00\x00\x00\x08ftyp",  # too short for a brand
    b"\x1a\x45\xdf\xa3\x80",  # EBML without a DocType
    b"\xff\xfb\xf0\x00",  # frame sync with a forbidden bitrate index
    b"\xff\xf1\x50\x80",  # ADTS AAC (layer bits 00): not accepted
    b"ID3\x04\x00\x00\x80\x00\x00\x00",  # ID3 with a bad syncsafe size
    b"\x89PNG",  # truncated magic
])
def test_other_content_is_refused(data):
    assert P.sniff(data) is None


def test_the_name_does_not_matter_only_the_bytes():
    # sniff only ever sees bytes; a text file called holiday.png is still text.
    assert P.sniff(b"just some text, honestly") is None
    assert P.sniff(PNG + b"trailing text") == ("image/png", "image")


@given(st.binary(max_size=P.SNIFF_BYTES + 64))
@settings(max_examples=500)
def test_random_bytes_never_crash_the_sniffer(data):
    result = P.sniff(data)
    assert result is None or (result[1] in P.CATEGORIES and "/" in result[0])


@given(st.sampled_from([PNG, JPEG, GIF, WEBP, WAV, FLAC, OGG, MP3_ID3, WEBM]), st.binary(max_size=200))
def test_a_known_header_decides_whatever_follows(header, tail):
    assert P.sniff(header + tail) == P.sniff(header)


@given(st.binary(min_size=1, max_size=40).filter(lambda b: P.sniff(b) is None), st.text(max_size=20))
def test_a_file_that_lies_by_name_is_typed_by_content(data, name):
    # the name never reaches the sniffer; prefixing a real header is what changes the answer
    assert P.sniff(data) is None
    assert P.sniff(PNG + data) == ("image/png", "image")


@pytest.mark.parametrize("header, size, expected", [
    (None, 100, None),
    ("bytes=0-9", 100, (0, 9)),
    ("bytes=10-", 100, (10, 99)),
    ("bytes=-10", 100, (90, 99)),
    ("bytes=-1000", 100, (0, 99)),
    ("bytes=90-1000", 100, (90, 99)),
    ("bytes=99-99", 100, (99, 99)),
    ("BYTES = 5-6", 100, (5, 6)),
    ("bytes=5-4", 100, None),  # invalid: ignored
    ("bytes=0-1,5-6", 100, None),  # several ranges: whole file
    ("items=0-1", 100, None),
    ("bytes=abc", 100, None),
    ("bytes=-", 100, None),
    ("bytes=١-٢", 100, None),  # non-ASCII digits are not digits here
])
def test_parse_range(header, size, expected):
    assert P.parse_range(header, size) == expected


@pytest.mark.parametrize("header, size", [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100),
                                          ("bytes=0-", 0), ("bytes=-5", 0)])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(P.Unsatisfiable):
        P.parse_range(header, size)


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10_000))
def test_parse_range_never_raises_anything_else(header, size):
    try:
        got = P.parse_range(header, size)
    except P.Unsatisfiable:
        return
    if got is not None:
        first, last = got
        assert 0 <= first <= last < size


@given(st.text(max_size=300))
def test_safe_names_are_safe(name):
    safe = P.safe_filename(name, "file")
    assert safe and len(safe) <= P.MAX_NAME_CHARS
    assert not any(c in safe for c in '"/\\\r\n\x00;')
    header = P.content_disposition(name, "file")
    assert header.isascii() and "\r" not in header and "\n" not in header
    assert header.count('"') == 2


def test_content_disposition_keeps_the_real_name_encoded():
    assert P.content_disposition("../../etc/passwd", "x") == "inline; filename=\"passwd\"; filename*=UTF-8''passwd"
    assert P.content_disposition("café.mp3", "x").endswith("filename*=UTF-8''caf%C3%A9.mp3")
    assert P.content_disposition(None, "abc.png").startswith('inline; filename="abc.png"')


def test_media_hash():
    assert P.is_media_hash("a" * 64)
    assert not P.is_media_hash("A" * 64)
    assert not P.is_media_hash("a" * 63)
    assert not P.is_media_hash(None)
