"""Saved sessions (token, user ID, pseudonym, device, stream positions) per server, private to the user.

Files live in ``$SHARON_CONFIG_DIR`` (default ``platformdirs.user_config_dir("sharon")``)
under ``sessions/``, one JSON file per server URL. The directory is created with mode 0700
and every file is written atomically with mode 0600: a token is a password.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional

import attr
import platformdirs

__all__ = ["Session", "ConfigError", "config_dir", "session_path", "save_session", "load_session", "delete_session"]

_SESSIONS = "sessions"


class ConfigError(Exception):
    """A saved session file exists but cannot be read."""


@attr.s(slots=True, auto_attribs=True, kw_only=True)
class Session:
    """What we remember about one signed-in device on one server."""

    server: str
    token: str
    user_id: str
    pseudonym: str
    device_id: str
    last_pos: Optional[int] = None
    room_pos: Dict[str, int] = attr.Factory(dict)
    """Last stream position shown to the user, per room ID (optional)."""

    def to_json(self) -> Dict[str, Any]:
        """The session as a JSON object."""
        return attr.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "Session":
        """Parse a session object; raises ConfigError if a field is missing or mistyped."""
        if not isinstance(data, dict):
            raise ConfigError("session file is not a JSON object")
        try:
            session = cls(
                server=data["server"],
                token=data["token"],
                user_id=data["user_id"],
                pseudonym=data["pseudonym"],
                device_id=data["device_id"],
                last_pos=data.get("last_pos"),
                room_pos=dict(data.get("room_pos") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"session file lacks or mangles {e}") from None
        for name in ("server", "token", "user_id", "pseudonym", "device_id"):
            if not isinstance(getattr(session, name), str):
                raise ConfigError(f"session file field {name} is not a string")
        return session


def config_dir() -> Path:
    """``$SHARON_CONFIG_DIR`` if set, else the platform's per-user config directory for sharon."""
    env = os.environ.get("SHARON_CONFIG_DIR")
    return Path(env) if env else Path(platformdirs.user_config_dir("sharon"))


def session_path(server: str) -> Path:
    """The file holding the session for ``server`` (a readable slug plus a hash of the exact URL)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", server.split("://", 1)[-1]).strip("_")[:60] or "server"
    digest = hashlib.sha256(server.encode("utf-8")).hexdigest()[:12]
    return config_dir() / _SESSIONS / f"{slug}-{digest}.json"


def save_session(session: Session) -> Path:
    """Write ``session`` atomically with mode 0600 (directory 0700); returns the file path."""
    path = session_path(session.server)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(session.to_json(), indent=2, sort_keys=True).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask and ignored for an existing file
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def load_session(server: str) -> Optional[Session]:
    """The saved session for ``server``, or None if there is none; ConfigError if it is unreadable."""
    path = session_path(server)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e})") from None
    return Session.from_json(data)


def delete_session(server: str) -> bool:
    """Forget the session for ``server``; True if there was one."""
    try:
        session_path(server).unlink()
        return True
    except FileNotFoundError:
        return False
