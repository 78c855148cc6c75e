"""Mention and hashtag extraction (protocol/text.py): examples and Hypothesis properties."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.text import MAX_ITEMS, MAX_TAG_CHARS, extract_hashtags, extract_mentions, normalise_tag


def tags(text: str):
    return extract_hashtags([text])


def mentions(text: str):
    return extract_mentions([text])


def test_hashtag_examples() -> None:
    assert tags("#Sleep #SLEEP #sleep") == ["sleep"]
    assert tags("#café, #ÉTÉ! #日本語 #Straße") == ["café", "été", "日本語", "strasse"]
    assert tags("(#self_care) and #day2") == ["self_care", "day2"]
    assert tags("#123 #_ #2024") == []  # a tag needs a letter
    assert tags("C# a#b &#39; ##double #") == []
    assert tags("see https://example.org/page#section or www.x.org/#frag") == []
    assert tags("mail bob@example.org#tag or x@y.z") == []
    assert tags("#" + "a" * MAX_TAG_CHARS) == ["a" * MAX_TAG_CHARS]
    assert tags("#" + "a" * (MAX_TAG_CHARS + 1)) == []
    assert tags(" ".join(f"#t{i}x" for i in range(50))) == [f"t{i}x" for i in range(MAX_ITEMS)]


def test_mention_examples() -> None:
    assert mentions("hi @Alice, @bob-2. and @carol_x!") == ["Alice", "bob-2", "carol_x"]
    assert mentions("@alice @ALICE") == ["alice"]
    assert mentions("mail alice@example.org or @@bob or a_@bob") == []
    assert mentions("@ab @-bob") == []  # too short / must start with a letter or digit
    assert mentions("see https://x.org/@alice/post") == []


WORD = st.text(alphabet=st.characters(categories=("L", "N"), exclude_characters="\x00"), min_size=1, max_size=12)
NOISE = st.text(alphabet=st.sampled_from(list(" ,.;:!?()[]\"'\n\t")), min_size=1, max_size=3)


@settings(max_examples=300)
@given(st.lists(st.tuples(NOISE, WORD), min_size=1, max_size=8))
def test_every_hashtag_between_punctuation_is_found(parts) -> None:
    text = "".join(f"{noise}#{word}" for noise, word in parts)
    expected = []
    for _, word in parts:
        tag = normalise_tag(word)
        if any(c.isalpha() for c in tag) and all(c.isalnum() for c in tag) and len(tag) <= MAX_TAG_CHARS \
                and tag not in expected:
            expected.append(tag)
    assert tags(text) == expected[:MAX_ITEMS]


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_tags_are_normalised_bounded_and_stable(text) -> None:
    found = tags(text)
    assert len(found) == len(set(found)) <= MAX_ITEMS
    for tag in found:
        assert 0 < len(tag) <= MAX_TAG_CHARS and tag == normalise_tag(tag)
        assert all(c == "_" or c.isalnum() for c in tag) and any(c.isalpha() for c in tag)
    assert tags(text.upper()) == [normalise_tag(t.upper()) for t in tags(text.upper())]


@settings(max_examples=200)
@given(WORD, WORD, st.sampled_from(["org", "com", "co.uk"]))
def test_emails_and_urls_hold_no_tags_or_mentions(user, host, tld) -> None:
    for text in (f"{user}@{host}.{tld}", f"https://{host}.{tld}/#{user}", f"http://{host}.{tld}/p?q=#{user}",
                 f"www.{host}.{tld}/#{user}", f"{user}@{host}.{tld}#{user}"):
        assert tags(text) == [], text
        assert mentions(text) == [], text


@settings(max_examples=200)
@given(WORD, WORD)
def test_hash_inside_a_word_is_not_a_tag(a, b) -> None:
    assert tags(f"{a}#{b}") == [] or not a[-1].isalnum()


PSEUDONYM = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_]{2,20}", fullmatch=True)


@settings(max_examples=300)
@given(st.lists(st.tuples(NOISE, PSEUDONYM), min_size=1, max_size=6))
def test_every_mention_between_punctuation_is_found(parts) -> None:
    text = "".join(f"{noise}@{name}" for noise, name in parts)
    expected, seen = [], set()
    for _, name in parts:
        if name.casefold() not in seen:
            seen.add(name.casefold())
            expected.append(name)
    assert mentions(text) == expected


@given(st.text(alphabet=string.printable, max_size=200))
def test_mentions_never_start_inside_a_word(text) -> None:
    for name in mentions(text):
        assert ("@" + name) in text
