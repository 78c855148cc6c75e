"""Typed identifiers (server name, user, room, event) that validate on entry.

After ``parse`` succeeds, code passes these frozen values around, never bare strings.
Grammar follows the Matrix appendices, narrowed for ``ps1``:

- server name: DNS name, IPv4 literal or ``[IPv6]`` literal, optional ``:port``;
- user ID: ``@localpart:server`` with localpart ``[a-z0-9._=/+-]+``;
- room ID: ``!`` + 43 URL-safe unpadded base64 characters (the create event's reference hash);
- event ID: ``$`` + 43 URL-safe unpadded base64 characters (the event's reference hash).

Every identifier is at most 255 bytes.
"""

from __future__ import annotations

import re
from typing import Tuple

import attr

from protocol.errors import BadField

__all__ = ["ServerName", "UserID", "RoomID", "EventID", "MAX_ID_BYTES"]

MAX_ID_BYTES = 255

# \Z, not $: "$" also matches before a trailing newline, which would let "name\n" through.
_DNS_RE = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
_IPV4_RE = re.compile(r"^(?:[0-9]{1,3}\.){3}[0-9]{1,3}\Z")
_IPV6_RE = re.compile(r"^\[[0-9A-Fa-f:.]{2,45}\]\Z")
_LOCALPART_RE = re.compile(r"^[a-z0-9._=/+\-]+\Z")
_HASH_RE = re.compile(r"^[A-Za-z0-9_\-]{43}\Z")


def _check_str(value: object, field: str) -> str:
    if type(value) is not str:
        raise BadField(f"{field} must be a string", field)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise BadField(f"{field} is longer than {MAX_ID_BYTES} bytes", field)
    return value


def _split_host_port(value: str, field: str) -> Tuple[str, int | None]:
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise BadField(f"{field} has an unterminated IPv6 literal", field)
        host, rest = value[: end + 1], value[end + 1 :]
    else:
        host, sep, port_s = value.partition(":")
        rest = sep + port_s
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or not rest[1:].isascii() or len(rest) > 6:
        raise BadField(f"{field} has an invalid port", field)
    port = int(rest[1:])
    if not 1 <= port <= 65535:
        raise BadField(f"{field} port must be 1..65535", field)
    return host, port


@attr.s(frozen=True, slots=True, auto_attribs=True, repr=False)
class ServerName:
    """A server name: ``host`` with an optional ``:port``."""

    value: str

    @classmethod
    def parse(cls, value: object, field: str = "server_name") -> "ServerName":
        """Validate ``value`` as a server name; raises BadField naming ``field``."""
        s = _check_str(value, field)
        host, _port = _split_host_port(s, field)
        if _IPV4_RE.match(host):
            if any(int(p) > 255 for p in host.split(".")):
                raise BadField(f"{field} has an invalid IPv4 address", field)
        elif not (_IPV6_RE.match(host) or _DNS_RE.match(host)):
            raise BadField(f"{field} is not a valid host name", field)
        return cls(s)

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"ServerName({self.value!r})"


@attr.s(frozen=True, slots=True, auto_attribs=True, repr=False)
class UserID:
    """A user ID ``@localpart:server``; the localpart is opaque, never the pseudonym."""

    localpart: str
    server: ServerName

    @classmethod
    def parse(cls, value: object, field: str = "user_id") -> "UserID":
        """Validate ``value`` as a user ID; raises BadField naming ``field``."""
        s = _check_str(value, field)
        if not s.startswith("@") or ":" not in s:
            raise BadField(f"{field} must look like @localpart:server", field)
        local, _, server = s[1:].partition(":")
        if not _LOCALPART_RE.match(local):
            raise BadField(f"{field} localpart may only contain a-z 0-9 . _ = / + -", field)
        return cls(local, ServerName.parse(server, field))

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server.value}"

    def __repr__(self) -> str:
        return f"UserID({str(self)!r})"


@attr.s(frozen=True, slots=True, auto_attribs=True, repr=False)
class RoomID:
    """A ``ps1`` room ID: ``!`` + the create event's reference hash."""

    value: str

    @classmethod
    def parse(cls, value: object, field: str = "room_id") -> "RoomID":
        """Validate ``value`` as a room ID; raises BadField naming ``field``."""
        s = _check_str(value, field)
        if not s.startswith("!") or not _HASH_RE.match(s[1:]):
            raise BadField(f"{field} must be '!' followed by 43 URL-safe base64 characters", field)
        return cls(s)

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"RoomID({self.value!r})"


@attr.s(frozen=True, slots=True, auto_attribs=True, repr=False)
class EventID:
    """A ``ps1`` event ID: ``$`` + the event's reference hash."""

    value: str

    @classmethod
    def parse(cls, value: object, field: str = "event_id") -> "EventID":
        """Validate ``value`` as an event ID; raises BadField naming ``field``."""
        s = _check_str(value, field)
        if not s.startswith("$") or not _HASH_RE.match(s[1:]):
            raise BadField(f"{field} must be '$' followed by 43 URL-safe base64 characters", field)
        return cls(s)

    def to_room_id(self) -> RoomID:
        """The room ID a create event with this ID defines (R12 style)."""
        return RoomID("!" + self.value[1:])

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"EventID({self.value!r})"
