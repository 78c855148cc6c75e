"""The server's Ed25519 signing key: loaded from the data directory, created on first start."""

from __future__ import annotations

import os
from pathlib import Path

from protocol.signing import SigningKey, decode_key_file, encode_key_file

__all__ = ["load_or_create_signing_key"]


def load_or_create_signing_key(path: Path, version: str = "a1") -> SigningKey:
    """Read the key file at ``path``; if absent, create it atomically with mode 0600."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, 0o600)
        return decode_key_file(path.read_text("ascii"))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.from_seed(version, os.urandom(32))
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, encode_key_file(key).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key
