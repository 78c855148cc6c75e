"""Ed25519 keys and JSON signing (federation.md §2.4, §5.1; APX #signing-json).

Keys come from caller-supplied 32-byte seeds: this module never generates randomness.
Signatures are always computed over canonical JSON rebuilt from the value.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping

import attr
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.b64 import decode_b64, encode_b64
from protocol.canonical_json import encode_canonical
from protocol.errors import BadField, BadSignature

__all__ = [
    "ALGORITHM",
    "SigningKey",
    "VerifyKey",
    "encode_key_file",
    "decode_key_file",
    "sign_json",
    "verify_json",
]

ALGORITHM = "ed25519"
"""The only signing algorithm ``ps1`` uses."""

_VERSION_RE = re.compile(r"[a-zA-Z0-9_]+")
_SEED_BYTES = 32
_PUBLIC_BYTES = 32
_SIGNATURE_BYTES = 64


def _check_version(version: object, field: str) -> str:
    """Validate a key version (``[a-zA-Z0-9_]+``); raises BadField naming ``field``."""
    if type(version) is not str or _VERSION_RE.fullmatch(version) is None:
        raise BadField(f"{field}: key version must match [a-zA-Z0-9_]+", field)
    return version


def _split_key_id(key_id: object, field: str) -> str:
    """Validate ``ed25519:<ver>`` and return the version."""
    if type(key_id) is not str or not key_id.startswith(ALGORITHM + ":"):
        raise BadField(f"{field}: key ID must look like ed25519:<version>", field)
    return _check_version(key_id[len(ALGORITHM) + 1 :], field)


def _seed_validator(_inst: object, _attribute: object, value: object) -> None:
    """attrs validator: the seed is exactly 32 bytes."""
    if type(value) is not bytes or len(value) != _SEED_BYTES:
        raise BadField(f"signing key seed must be {_SEED_BYTES} bytes", "seed")


def _version_validator(_inst: object, _attribute: object, value: object) -> None:
    """attrs validator: the version matches ``[a-zA-Z0-9_]+``."""
    _check_version(value, "version")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class VerifyKey:
    """A public Ed25519 key under its key ID (``ed25519:<ver>``)."""

    key_id: str
    public_key: bytes = attr.ib(repr=False)
    _key: Ed25519PublicKey = attr.ib(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        _split_key_id(self.key_id, "key_id")
        if type(self.public_key) is not bytes or len(self.public_key) != _PUBLIC_BYTES:
            raise BadField(f"public key must be {_PUBLIC_BYTES} bytes", "public_key")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise BadField("public key is not a valid Ed25519 key", "public_key") from None
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_b64(cls, key_id: str, public_key_b64: str) -> "VerifyKey":
        """Build from a key ID and an unpadded-base64 public key; raises BadField."""
        return cls(key_id, decode_b64(public_key_b64, "public_key"))

    @property
    def version(self) -> str:
        """The part of the key ID after ``ed25519:``."""
        return self.key_id[len(ALGORITHM) + 1 :]

    def public_key_b64(self) -> str:
        """The public key as unpadded standard base64."""
        return encode_b64(self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is this key's Ed25519 signature of ``message``."""
        if type(signature) is not bytes or len(signature) != _SIGNATURE_BYTES:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SigningKey:
    """A private Ed25519 key: a version and a 32-byte seed (never shown in reprs)."""

    version: str = attr.ib(validator=_version_validator)
    seed: bytes = attr.ib(repr=False, validator=_seed_validator)
    _key: Ed25519PrivateKey = attr.ib(init=False, repr=False, eq=False)
    _public: bytes = attr.ib(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_public", key.public_key().public_bytes_raw())

    @classmethod
    def from_seed(cls, version: str, seed: bytes) -> "SigningKey":
        """Build from a version and a 32-byte seed the caller supplies; raises BadField."""
        return cls(version, seed)

    @property
    def key_id(self) -> str:
        """``ed25519:<version>``."""
        return f"{ALGORITHM}:{self.version}"

    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public

    def public_key_b64(self) -> str:
        """The public key as unpadded standard base64."""
        return encode_b64(self._public)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def verify_key(self) -> VerifyKey:
        """The matching public key under the same key ID."""
        return VerifyKey(self.key_id, self._public)


def encode_key_file(key: SigningKey) -> str:
    """The key file line ``ed25519 <ver> <unpadded b64 seed>\\n`` (store it with mode 0600)."""
    return f"{ALGORITHM} {key.version} {encode_b64(key.seed)}\n"


def decode_key_file(text: str) -> SigningKey:
    """Parse a key file holding one ``ed25519 <ver> <b64 seed>`` line; raises BadField."""
    field = "signing_key"
    if type(text) is not str:
        raise BadField("key file must be text", field)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise BadField(f"key file must hold exactly one key line, found {len(lines)}", field)
    parts = lines[0].split()
    if len(parts) != 3:
        raise BadField("key line must be 'ed25519 <version> <base64 seed>'", field)
    algorithm, version, seed_b64 = parts
    if algorithm != ALGORITHM:
        raise BadField(f"unsupported key algorithm {algorithm[:32]!r}; only ed25519", field)
    _check_version(version, field)
    seed = decode_b64(seed_b64, field)
    if len(seed) != _SEED_BYTES:
        raise BadField(f"key seed must decode to {_SEED_BYTES} bytes, not {len(seed)}", field)
    return SigningKey(version, seed)


def _strip(obj: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of ``obj`` without ``signatures`` and ``unsigned``: the part that is signed."""
    return {k: v for k, v in obj.items() if k != "signatures" and k != "unsigned"}


def sign_json(obj: Mapping[str, Any], entity: str, key: SigningKey) -> Dict[str, Any]:
    """A NEW dict: ``obj`` with ``key``'s signature added under ``signatures[entity]``.

    Existing signatures (of any entity) are kept; ``unsigned`` is not signed but is kept.
    Raises BadField if ``signatures`` is malformed, BadJSON if ``obj`` is not JSON.
    """
    if type(obj) is not dict:
        raise BadField("only JSON objects can be signed", "signatures")
    old = obj.get("signatures", {})
    if type(old) is not dict or any(type(v) is not dict for v in old.values()):
        raise BadField("signatures must be an object of objects", "signatures")
    body = _strip(obj)
    signature = encode_b64(key.sign(encode_canonical(body)))
    signatures = {name: dict(sigs) for name, sigs in old.items()}
    signatures.setdefault(entity, {})[key.key_id] = signature
    body["signatures"] = signatures
    if "unsigned" in obj:
        body["unsigned"] = obj["unsigned"]
    return body


def verify_json(obj: Mapping[str, Any], entity: str, verify_keys: Mapping[str, VerifyKey]) -> None:
    """Check ``entity``'s signatures on ``obj`` with ``verify_keys`` (key ID → key).

    The entity's entry must exist; key IDs of other algorithms and keys we do not hold are
    ignored; if none is left the check fails; every remaining signature must verify.
    Raises BadSignature (BadJSON if ``obj`` is not JSON).
    """
    signatures = obj.get("signatures") if type(obj) is dict else None
    if type(signatures) is not dict:
        raise BadSignature("the object has no signatures", "signatures")
    mine = signatures.get(entity)
    if type(mine) is not dict:
        raise BadSignature(f"not signed by {entity}", "signatures")
    usable = [
        (key_id, sig)
        for key_id, sig in mine.items()
        if type(key_id) is str and key_id.startswith(ALGORITHM + ":") and key_id in verify_keys
    ]
    if not usable:
        raise BadSignature(f"no signature by {entity} with a known key", "signatures")
    message = encode_canonical(_strip(obj))
    for key_id, sig in usable:
        if type(sig) is not str:
            raise BadSignature(f"signature {key_id} of {entity} is not a string", "signatures")
        try:
            raw = decode_b64(sig, "signatures")
        except BadField:
            raise BadSignature(f"signature {key_id} of {entity} is not base64", "signatures") from None
        if not verify_keys[key_id].verify(message, raw):
            raise BadSignature(f"signature {key_id} of {entity} does not verify", "signatures")
