"""The identity record (protocol/identity.py): parsing, NHS numbers, dates, values."""

from __future__ import annotations

import datetime
from typing import Any, Dict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import BadField, MissingField
from protocol.identity import (
    IDENTITY_FIELDS, Identity, identity_values, nhs_check_digit, normalise_nhs_number,
)

NOW_MS = 1_795_000_000_000  # 2026-11-18 11:06 UTC


def full() -> Dict[str, Any]:
    return {
        "name": "  Jocasta Quillfeather ",
        "date_of_birth": "1987-06-05",
        "nhs_number": "943 476 5919",
        "contact": {"phone": "+44 7700 900321", "email": "jocasta.q@example.org", "address": "12 Wrenfield Lane\nLeeds"},
        "care_team": "Wrenfield CMHT",
        "emergency_contact": {"name": "Barnaby Quillfeather", "phone": "07700 900654", "relationship": "brother"},
    }


def with_nhs(prefix: str) -> str:
    check = nhs_check_digit(prefix)
    assert check is not None
    return prefix + str(check)


def test_full_record_parses_normalises_and_round_trips() -> None:
    ident = Identity.parse(full(), NOW_MS)
    assert ident.name == "Jocasta Quillfeather"
    assert ident.nhs_number == "9434765919"
    assert ident.contact.address == "12 Wrenfield Lane\nLeeds"
    assert ident.emergency_contact is not None and ident.emergency_contact.relationship == "brother"
    assert Identity.parse(ident.to_dict(), NOW_MS) == ident
    assert "Jocasta" not in repr(ident) and "9434765919" not in str(ident)


def test_minimal_record() -> None:
    ident = Identity.parse({"name": "A", "date_of_birth": "2000-01-01", "nhs_number": "4010232137"})
    assert ident.to_dict() == {"name": "A", "date_of_birth": "2000-01-01", "nhs_number": "4010232137"}
    assert ident.emergency_contact is None and ident.care_team == ""
    assert identity_values(ident) == ["A", "2000-01-01", "4010232137"]


def test_identity_values_cover_every_field() -> None:
    ident = Identity.parse(full())
    values = identity_values(ident)
    assert len(values) == len(IDENTITY_FIELDS) == 10
    assert set(values) == {ident.value(p) for p in IDENTITY_FIELDS}
    assert "9434765919" in values and "brother" in values


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_nhs_prefix_with_its_check_digit_is_valid(prefix: str) -> None:
    check = nhs_check_digit(prefix)
    if check is None:  # remainder 1: no number with this prefix is ever issued
        for d in "0123456789":
            with pytest.raises(BadField):
                normalise_nhs_number(prefix + d)
        return
    number = prefix + str(check)
    assert normalise_nhs_number(number) == number
    spaced = f"{number[:3]} {number[3:6]} {number[6:]}"
    assert normalise_nhs_number(spaced) == number


@given(st.text(alphabet="0123456789", min_size=9, max_size=9), st.integers(0, 9), st.integers(1, 9))
def test_nhs_number_with_a_changed_digit_is_invalid(prefix: str, position: int, delta: int) -> None:
    check = nhs_check_digit(prefix)
    if check is None:
        return
    digits = list(prefix + str(check))
    digits[position] = str((int(digits[position]) + delta) % 10)
    # Modulus 11 with distinct weights catches every single-digit change.
    with pytest.raises(BadField) as err:
        Identity.parse({**full(), "nhs_number": "".join(digits)})
    assert err.value.field == "identity.nhs_number"


def test_nhs_check_digit_known_values() -> None:
    assert nhs_check_digit("943476591") == 9
    assert nhs_check_digit("401023213") == 7


@pytest.mark.parametrize("bad", ["943476591", "94347659190", "943476591X", "９４３４７６５９１９", 9434765919, None, ""])
def test_bad_nhs_numbers_name_the_field(bad: Any) -> None:
    with pytest.raises(BadField) as err:
        Identity.parse({**full(), "nhs_number": bad})
    assert err.value.field == "identity.nhs_number"


@pytest.mark.parametrize("bad", ["1987-02-30", "1987-13-01", "87-06-05", "1987-6-5", "19870605", "1899-12-31",
                                 "2026-11-19", "3000-01-01", 19870605, ""])
def test_bad_dates_name_the_field(bad: Any) -> None:
    with pytest.raises(BadField) as err:
        Identity.parse({**full(), "date_of_birth": bad}, NOW_MS)
    assert err.value.field == "identity.date_of_birth"


def test_today_is_allowed_and_the_future_check_needs_now() -> None:
    today = datetime.datetime.fromtimestamp(NOW_MS / 1000, tz=datetime.timezone.utc).date().isoformat()
    assert Identity.parse({**full(), "date_of_birth": today}, NOW_MS).date_of_birth == today
    assert Identity.parse({**full(), "date_of_birth": "2026-11-19"}).date_of_birth == "2026-11-19"
    assert Identity.parse({**full(), "date_of_birth": "2024-02-29"}, NOW_MS).date_of_birth == "2024-02-29"


@pytest.mark.parametrize("key", ["name", "date_of_birth", "nhs_number"])
def test_required_fields(key: str) -> None:
    obj = full()
    del obj[key]
    with pytest.raises(MissingField) as err:
        Identity.parse(obj)
    assert err.value.field == f"identity.{key}"


@pytest.mark.parametrize("patch, field", [
    ({"name": "   "}, "identity.name"),
    ({"name": "x" * 201}, "identity.name"),
    ({"name": "Jo\nBloggs"}, "identity.name"),
    ({"name": 7}, "identity.name"),
    ({"contact": {"phone": "call me"}}, "identity.contact.phone"),
    ({"contact": {"email": "not-an-email"}}, "identity.contact.email"),
    ({"contact": {"fax": "123"}}, "identity.contact.fax"),
    ({"contact": "0113 496 0000"}, "identity.contact"),
    ({"care_team": ["a"]}, "identity.care_team"),
    ({"emergency_contact": {"name": "Sam"}}, "identity.emergency_contact.phone"),
    ({"emergency_contact": {"phone": "0113 496 0000"}}, "identity.emergency_contact.name"),
    ({"emergency_contact": {"name": "Sam", "phone": "0113 496 0000", "age": 4}}, "identity.emergency_contact.age"),
    ({"religion": "x"}, "identity.religion"),
])
def test_bad_fields_are_named(patch: Dict[str, Any], field: str) -> None:
    with pytest.raises((BadField, MissingField)) as err:  # MissingField is a BadRequest, not a BadField
        Identity.parse({**full(), **patch})
    assert err.value.field == field


def test_not_an_object() -> None:
    with pytest.raises(BadField) as err:
        Identity.parse(["name"])
    assert err.value.field == "identity"


@given(st.text(max_size=40), st.text(max_size=40))
def test_parse_never_crashes_on_strings(name: str, dob: str) -> None:
    try:
        ident = Identity.parse({"name": name, "date_of_birth": dob, "nhs_number": "9434765919"}, NOW_MS)
    except (BadField, MissingField):
        return
    assert Identity.parse(ident.to_dict(), NOW_MS) == ident
