"""Pseudonym screening (#5): staff titles, abuse, contact details and identifying patterns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.client import SharonClient
from protocol.errors import BadField, InvalidPseudonym, PseudonymRejected, PseudonymTaken
from sharon_server.accounts import PseudonymScreen, normalise_pseudonym, read_blocklist
from tests.helpers import PASSWORD

SCREEN = PseudonymScreen()

WORDS = ["quiet", "heron", "river", "moss", "lantern", "willow", "ember", "fern", "harbour", "night", "owl",
         "cedar", "dawn", "pebble", "sparrow", "tide", "thistle", "maple", "cloud", "birch", "robin", "brook"]
SEPARATORS = ["-", "_", "."]


def screened(pseudonym: str, personal: tuple = ()) -> None:
    """Normalise then screen, as registration does (either error names the pseudonym)."""
    normalised, _ = normalise_pseudonym(pseudonym)
    SCREEN.check(normalised, personal)


def rejected(pseudonym: str, personal: tuple = ()) -> BadField:
    with pytest.raises((PseudonymRejected, InvalidPseudonym)) as exc:
        screened(pseudonym, personal)
    assert exc.value.field == "pseudonym"
    return exc.value


ordinary = st.builds(
    lambda words, seps, digits: "".join(w + s for w, s in zip(words, seps))[:-1] + digits,
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    st.lists(st.sampled_from(SEPARATORS), min_size=3, max_size=3),
    st.sampled_from(["", "7", "42", "365"]),
).filter(lambda p: 3 <= len(p) <= 32)

local = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
domains = st.sampled_from(["example.com", "mail.co.uk", "nhs.net", "proton.me", "web.io"])
uk_mobiles = st.integers(0, 999999).map(lambda n: f"07700 {n:06d}")
uk_landlines = st.integers(0, 9999999).map(lambda n: f"0113-{n // 1000:03d}-{n % 1000:04d}"[:13])
intl = st.integers(10**9, 10**12 - 1).map(lambda n: f"+44{n}")
phones = st.one_of(uk_mobiles, uk_landlines, intl, st.integers(1000000, 99999999999).map(str))


@settings(max_examples=150, deadline=None)
@given(ordinary)
def test_ordinary_pseudonyms_are_accepted(pseudonym):
    screened(pseudonym)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(WORDS), local, domains, st.sampled_from(["@", ".", "-at-", "_"]))
def test_email_addresses_embedded_in_pseudonyms_are_rejected(word, name, domain, at):
    rejected(f"{word}-{name}{at}{domain}"[:32] if at != "@" else f"{word}-{name}@{domain}")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(WORDS), phones, st.sampled_from(["-", "_", ".", ""]))
def test_phone_numbers_embedded_in_pseudonyms_are_rejected(word, phone, sep):
    rejected(f"{word}{sep}{phone.replace(' ', sep)}")


@pytest.mark.parametrize("pseudonym, why", [
    ("admin", "staff"), ("Adm1n-help", "staff"), ("m.o.d.e.r.a.t.o.r", "staff"), ("the-mod", "staff"),
    ("nhs_helper", "staff"), ("Sharon.Official", "staff"), ("clinician7", "staff"), ("NURSE_amy", "staff"),
    ("fuck-this", "not allowed"), ("b1tch", "not allowed"), ("kys-now", "not allowed"),
    ("heron.gmail.com", "email"), ("moss_at_gmail_dot_com", "email"), ("www-moss", "social"),
    ("snapchat-fern", "social"), ("fern.co.uk", "email"), ("943-476-5919", "NHS"), ("owl9434765919", "NHS"),
    ("fern-12.05.1990", "date"), ("07700900123", "phone"), ("+447700900123", None),
])
def test_built_in_rules_name_the_rule(pseudonym, why):
    err = rejected(pseudonym)
    if why == "staff":
        assert "staff" in err.reason
    elif why == "not allowed":
        assert "not allowed" in err.reason
    elif why == "email":
        assert "email" in err.reason or "web" in err.reason
    elif why == "social":
        assert "social media" in err.reason or "web" in err.reason
    elif why == "NHS":
        assert "NHS number" in err.reason
    elif why == "date":
        assert "date" in err.reason
    elif why == "phone":
        assert "phone" in err.reason


@pytest.mark.parametrize("pseudonym", [
    "modest-fern", "grapes", "scunthorpe-owl", "classic.heron", "studio-moss", "dawn-2024", "owl-365",
    "Hermione", "assistant-moss", "therapy-fern", "comet", "net-owl",
])
def test_near_misses_are_accepted(pseudonym):
    screened(pseudonym)


def test_the_invited_persons_own_name_and_birth_date():
    personal = ("Wilhelmina Thistlewood", "1987-04-23")
    for pseudonym in ("wilhelmina", "W1lhelmina-x", "the.thistlewood", "owl1987", "fern-2304", "fern-0423"):
        err = rejected(pseudonym, personal)
        assert "Wilhelmina" not in err.reason and "1987" not in err.reason
    screened("quiet-heron", personal)
    screened("wil-owl", personal)  # two letters is not a name


def test_block_list_file_and_extra_entries(tmp_path):
    path = tmp_path / "block.txt"
    path.write_text("# comment line\nmarmalade   # trailing comment\n\n  ZORK \n")
    entries = read_blocklist(str(path))
    assert entries == ["marmalade", "ZORK"]
    screen = PseudonymScreen(tuple(entries))
    for pseudonym in ("marm4lade", "Mar-ma-lade", "zork", "the.zork"):
        with pytest.raises(PseudonymRejected):
            screen.check(pseudonym)
    screen.check("zorkish")  # short entries match whole words only


@pytest.mark.integration
def test_registration_screens_and_names_the_field(server, run):
    async def scenario():
        client = await SharonClient.connect(server.ws_url)
        for pseudonym in ("nhs-support", "fern07700900123", "heron.gmail.com"):
            with pytest.raises(PseudonymRejected) as exc:
                await client.register(pseudonym, PASSWORD)
            assert exc.value.field == "pseudonym" and exc.value.code == "pseudonym_rejected"
        await client.register("Quiet-Heron-7", PASSWORD)
        other = await SharonClient.connect(server.ws_url)
        with pytest.raises(PseudonymTaken):  # unique per server, case-insensitively
            await other.register("quiet-heron-7", PASSWORD)
        await client.close()
        await other.close()

    run(scenario())
