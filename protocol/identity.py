"""A member's real identity: the record kept in the identity vault (pure).

The record is validated here and nowhere else; ``sharon_server/vault.py`` encrypts
``Identity.to_dict()`` and stores only ciphertext. Nothing in this module is ever sent to
peers: ``identity_values`` lists every value of a record so tests can assert that none of
them appears in any response, frame, log line or database dump.

Rules (``Identity.parse``; ``BadField``/``MissingField`` name the field, e.g.
``identity.nhs_number``):

- ``name``: required, 1..200 characters after trimming, no control characters;
- ``date_of_birth``: required ``YYYY-MM-DD``, a real calendar date, from 1900-01-01, and
  not after today (UTC) when ``now_ms`` is given;
- ``nhs_number``: required, 10 digits; spaces and hyphens are allowed on input and removed
  (``"943 476 5919"`` -> ``"9434765919"``); the tenth digit must be the modulus-11 check
  digit of the first nine (``nhs_check_digit``);
- ``contact``: optional object ``{phone?, email?, address?}``;
- ``care_team``: optional string, up to 200 characters;
- ``emergency_contact``: optional object ``{name, phone, relationship?}``.

Unknown keys are rejected: the vault stores exactly what is validated here.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict, List, Mapping, Optional

import attr

from protocol.errors import BadField, MissingField

__all__ = [
    "Identity",
    "Contact",
    "EmergencyContact",
    "IDENTITY_FIELDS",
    "identity_values",
    "nhs_check_digit",
    "normalise_nhs_number",
    "MIN_DATE_OF_BIRTH",
]

IDENTITY_FIELDS: List[str] = [
    "name",
    "date_of_birth",
    "nhs_number",
    "contact.phone",
    "contact.email",
    "contact.address",
    "care_team",
    "emergency_contact.name",
    "emergency_contact.phone",
    "emergency_contact.relationship",
]
"""Every value path of an identity record (dotted: ``contact.phone``)."""

MIN_DATE_OF_BIRTH = datetime.date(1900, 1, 1)
MAX_NAME = 200
MAX_ADDRESS = 500
MAX_EMAIL = 254
MAX_RELATIONSHIP = 100

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_EXCEPT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PHONE = re.compile(r"\+?[0-9][0-9 ()\-]{4,29}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NHS_SEPARATORS = re.compile(r"[ \-]")


def nhs_check_digit(first_nine: str) -> Optional[int]:
    """The NHS modulus-11 check digit of nine digits, or None if no number has that prefix.

    Weights 10..2 on the nine digits; check = 11 - (sum mod 11); 11 becomes 0; 10 means
    the prefix is never issued.
    """
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError("need exactly nine ASCII digits")
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def normalise_nhs_number(value: Any, field: str = "identity.nhs_number") -> str:
    """Ten digits with separators removed, check digit verified; BadField otherwise."""
    if type(value) is not str:
        raise BadField("must be a string of 10 digits", field)
    digits = _NHS_SEPARATORS.sub("", value.strip())
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise BadField("must be 10 digits (spaces allowed)", field)
    if nhs_check_digit(digits[:9]) != int(digits[9]):
        raise BadField("is not a valid NHS number (check digit)", field)
    return digits


def _obj(value: Any, field: str, allowed: frozenset) -> Mapping[str, Any]:
    if type(value) is not dict:
        raise BadField("must be an object", field)
    for key in value:
        if key not in allowed:
            raise BadField("unknown field", f"{field}.{key}" if type(key) is str else field)
    return value


def _text(obj: Mapping[str, Any], key: str, field: str, *, max_len: int, required: bool,
          multiline: bool = False) -> str:
    """A trimmed string ('' when optional and absent/empty)."""
    path = f"{field}.{key}"
    if key not in obj or obj[key] is None:
        if required:
            raise MissingField("is required", path)
        return ""
    value = obj[key]
    if type(value) is not str:
        raise BadField("must be a string", path)
    value = value.strip()
    if required and not value:
        raise BadField("must not be empty", path)
    if len(value) > max_len:
        raise BadField(f"must be at most {max_len} characters", path)
    if (_CONTROL_EXCEPT_NEWLINE if multiline else _CONTROL).search(value):
        raise BadField("must not contain control characters", path)
    return value


def _phone(obj: Mapping[str, Any], key: str, field: str, required: bool) -> str:
    value = _text(obj, key, field, max_len=30, required=required)
    if value and not _PHONE.fullmatch(value):
        raise BadField("must be a phone number (digits, spaces, + - ( ))", f"{field}.{key}")
    return value


def _date_of_birth(obj: Mapping[str, Any], field: str, now_ms: Optional[int]) -> str:
    path = f"{field}.date_of_birth"
    value = _text(obj, "date_of_birth", field, max_len=10, required=True)
    if not _DATE.fullmatch(value):
        raise BadField("must be a date YYYY-MM-DD", path)
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise BadField("is not a real calendar date", path) from None
    if day < MIN_DATE_OF_BIRTH:
        raise BadField(f"must not be before {MIN_DATE_OF_BIRTH.isoformat()}", path)
    if now_ms is not None:
        today = datetime.datetime.fromtimestamp(now_ms / 1000, tz=datetime.timezone.utc).date()
        if day > today:
            raise BadField("must not be in the future", path)
    return value


@attr.s(frozen=True, slots=True, auto_attribs=True, kw_only=True, repr=False)
class Contact:
    """How to reach the member; every part optional ('' when absent)."""

    phone: str = ""
    email: str = ""
    address: str = ""

    _KEYS = frozenset({"phone", "email", "address"})

    @classmethod
    def parse(cls, value: Any, field: str = "identity.contact") -> "Contact":
        obj = _obj(value, field, cls._KEYS)
        email = _text(obj, "email", field, max_len=MAX_EMAIL, required=False)
        if email and not _EMAIL.fullmatch(email):
            raise BadField("must be an email address", f"{field}.email")
        return cls(
            phone=_phone(obj, "phone", field, required=False),
            email=email,
            address=_text(obj, "address", field, max_len=MAX_ADDRESS, required=False, multiline=True),
        )

    def __repr__(self) -> str:
        return "Contact(<redacted>)"

    def to_dict(self) -> Dict[str, str]:
        return {k: v for k, v in (("phone", self.phone), ("email", self.email), ("address", self.address)) if v}


@attr.s(frozen=True, slots=True, auto_attribs=True, kw_only=True, repr=False)
class EmergencyContact:
    """Who to call in an emergency: name and phone required, relationship optional."""

    name: str
    phone: str
    relationship: str = ""

    _KEYS = frozenset({"name", "phone", "relationship"})

    @classmethod
    def parse(cls, value: Any, field: str = "identity.emergency_contact") -> "EmergencyContact":
        obj = _obj(value, field, cls._KEYS)
        return cls(
            name=_text(obj, "name", field, max_len=MAX_NAME, required=True),
            phone=_phone(obj, "phone", field, required=True),
            relationship=_text(obj, "relationship", field, max_len=MAX_RELATIONSHIP, required=False),
        )

    def __repr__(self) -> str:
        return "EmergencyContact(<redacted>)"

    def to_dict(self) -> Dict[str, str]:
        out = {"name": self.name, "phone": self.phone}
        if self.relationship:
            out["relationship"] = self.relationship
        return out


@attr.s(frozen=True, slots=True, auto_attribs=True, kw_only=True, repr=False)
class Identity:
    """A member's real identity, validated and normalised (see the module docstring)."""

    name: str
    date_of_birth: str
    nhs_number: str
    contact: Contact = Contact()
    care_team: str = ""
    emergency_contact: Optional[EmergencyContact] = None

    _KEYS = frozenset({"name", "date_of_birth", "nhs_number", "contact", "care_team", "emergency_contact"})

    @classmethod
    def parse(cls, value: Any, now_ms: Optional[int] = None, field: str = "identity") -> "Identity":
        """Validate an identity object; ``now_ms`` (if given) rejects future birth dates."""
        obj = _obj(value, field, cls._KEYS)
        name = _text(obj, "name", field, max_len=MAX_NAME, required=True)
        dob = _date_of_birth(obj, field, now_ms)
        if "nhs_number" not in obj:
            raise MissingField("is required", f"{field}.nhs_number")
        nhs = normalise_nhs_number(obj["nhs_number"], f"{field}.nhs_number")
        contact = Contact() if obj.get("contact") is None else Contact.parse(obj["contact"], f"{field}.contact")
        care_team = _text(obj, "care_team", field, max_len=MAX_NAME, required=False)
        ec = obj.get("emergency_contact")
        emergency = None if ec is None else EmergencyContact.parse(ec, f"{field}.emergency_contact")
        return cls(name=name, date_of_birth=dob, nhs_number=nhs, contact=contact, care_team=care_team,
                   emergency_contact=emergency)

    def to_dict(self) -> Dict[str, Any]:
        """The record as JSON-able data; ``Identity.parse(x.to_dict()) == x``."""
        out: Dict[str, Any] = {"name": self.name, "date_of_birth": self.date_of_birth, "nhs_number": self.nhs_number}
        contact = self.contact.to_dict()
        if contact:
            out["contact"] = contact
        if self.care_team:
            out["care_team"] = self.care_team
        if self.emergency_contact is not None:
            out["emergency_contact"] = self.emergency_contact.to_dict()
        return out

    def value(self, path: str) -> str:
        """The value at one of ``IDENTITY_FIELDS`` ('' when absent)."""
        head, _, tail = path.partition(".")
        if not tail:
            return str(getattr(self, head))
        part = getattr(self, head)
        return "" if part is None else str(getattr(part, tail))

    def __repr__(self) -> str:
        # Never print identity data by accident (logs, tracebacks, assertion messages).
        return "Identity(<redacted>)"

    __str__ = __repr__


def identity_values(identity: Identity) -> List[str]:
    """Every non-empty value of the record (one per ``IDENTITY_FIELDS`` path that is set)."""
    return [v for v in (identity.value(p) for p in IDENTITY_FIELDS) if v]
