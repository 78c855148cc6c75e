"""Client frames (docs/protocol.md §1, §3): codecs, typed requests, reply builders.

A codec turns bytes into a value of the strict JSON data model (or raises ``BadMsgpack`` /
``BadJSON``); ``parse_request`` turns that value into one typed, validated request (or
raises a ``BadRequest`` subclass naming the field).  Unknown extra fields are ignored.
Optional fields treat ``null`` the same as absent.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import attr
import msgpack

from protocol.canonical_json import check_json_value, decode_strict
from protocol.errors import BadField, BadFrame, BadMsgpack, BadRequest, MissingField, SharonError, UnknownOp
from protocol.events import CLIENT_ROOM_KINDS
from protocol.ids import EventID, RoomID, UserID

__all__ = [
    "SUBPROTOCOL_MSGPACK", "SUBPROTOCOL_JSON", "SUBPROTOCOLS", "Codec", "MsgpackCodec",
    "JsonCodec", "MSGPACK_CODEC", "JSON_CODEC", "codec_for", "RequestId", "Register", "Login",
    "Auth", "Logout", "Ping", "CreateRoom", "Invite", "Join", "Leave", "Rooms", "Send", "History",
    "Sync", "Request", "parse_request", "read_request_id", "ok_frame", "error_frame",
    "event_frame", "register_request", "read_str", "read_int", "read_bool", "read_room_id",
    "read_user_id", "read_event_id",
]

SUBPROTOCOL_MSGPACK = "sharon.v1.msgpack"
SUBPROTOCOL_JSON = "sharon.v1.json"
SUBPROTOCOLS = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)
"""WebSocket subprotocols in order of preference."""

RequestId = Union[int, str]
MAX_REQUEST_ID = 2**31 - 1
MAX_REQUEST_ID_CHARS = 64


# --------------------------------------------------------------------------- codecs


def _msgpack_pairs(pairs: List[Tuple[Any, Any]]) -> Dict[Any, Any]:
    """msgpack ``object_pairs_hook``: build a dict, rejecting repeated keys."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BadMsgpack("duplicate key in a map")
    return obj


class Codec:
    """Encodes reply frames and decodes request frames for one WebSocket subprotocol."""

    __slots__ = ()
    subprotocol: str = ""
    binary: bool = False

    def encode(self, frame: Dict[str, Any]) -> bytes:
        """The wire bytes of ``frame`` (a value the server built from the JSON data model)."""
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        """The JSON-model value of ``data``; raises BadMsgpack or BadJSON."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.subprotocol!r})"


class MsgpackCodec(Codec):
    """``sharon.v1.msgpack``: binary frames, msgpack of the JSON data model only."""

    __slots__ = ()
    subprotocol = SUBPROTOCOL_MSGPACK
    binary = True

    def encode(self, frame: Dict[str, Any]) -> bytes:
        """msgpack bytes of ``frame`` (``str`` as str type, never bin)."""
        return msgpack.packb(frame, use_bin_type=True)

    def decode(self, data: bytes) -> Any:
        """Decode one msgpack value; rejects bin, ext, floats, non-str keys, big ints, dups."""
        try:
            value = msgpack.unpackb(
                data, raw=False, strict_map_key=True, use_list=True, object_pairs_hook=_msgpack_pairs
            )
        except msgpack.ExtraData:
            raise BadMsgpack("trailing bytes after the msgpack value") from None
        except msgpack.StackError:
            raise BadMsgpack("msgpack is nested too deeply") from None
        except UnicodeDecodeError:
            raise BadMsgpack("a msgpack string is not valid UTF-8") from None
        except (ValueError, TypeError, RecursionError, OverflowError) as e:
            raise BadMsgpack(f"malformed msgpack: {str(e)[:100]}") from None
        check_json_value(value, error=BadMsgpack)
        return value


class JsonCodec(Codec):
    """``sharon.v1.json``: text frames, strict UTF-8 JSON."""

    __slots__ = ()
    subprotocol = SUBPROTOCOL_JSON
    binary = False

    def encode(self, frame: Dict[str, Any]) -> bytes:
        """Compact UTF-8 JSON of ``frame``."""
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        """Decode strict JSON; raises BadJSON."""
        return decode_strict(data)


MSGPACK_CODEC = MsgpackCodec()
JSON_CODEC = JsonCodec()
_CODECS = {c.subprotocol: c for c in (MSGPACK_CODEC, JSON_CODEC)}


def codec_for(subprotocol: str) -> Codec:
    """The codec of a negotiated subprotocol; raises BadRequest for any other."""
    codec = _CODECS.get(subprotocol) if type(subprotocol) is str else None
    if codec is None:
        raise BadRequest(f"unsupported subprotocol {str(subprotocol)[:64]!r}", "subprotocol")
    return codec


# --------------------------------------------------------------------------- requests

_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class Register:
    """``register``: create an account and authenticate this connection."""

    id: RequestId
    pseudonym: str
    password: str = attr.ib(repr=False)
    device_name: Optional[str] = None
    invite_code: Optional[str] = attr.ib(default=None, repr=False)
    """A clinician's invite code (docs/protocol.md §8.5): joins the new account to the service."""


@_frozen
class Login:
    """``login``: open a new device session and authenticate this connection."""

    id: RequestId
    pseudonym: str
    password: str = attr.ib(repr=False)
    device_name: Optional[str] = None


@_frozen
class Auth:
    """``auth``: authenticate this connection with an access token."""

    id: RequestId
    token: str = attr.ib(repr=False)


@_frozen
class Logout:
    """``logout``: revoke this connection's token."""

    id: RequestId


@_frozen
class Ping:
    """``ping``: liveness check."""

    id: RequestId


@_frozen
class CreateRoom:
    """``create_room``: create a room of a kind with a name."""

    id: RequestId
    kind: str
    name: str
    topic: Optional[str] = None
    public: bool = False
    service_id: Optional[RoomID] = None


@_frozen
class Invite:
    """``invite``: invite a user to a room."""

    id: RequestId
    room_id: RoomID
    user_id: UserID


@_frozen
class Join:
    """``join``: join a room."""

    id: RequestId
    room_id: RoomID


@_frozen
class Leave:
    """``leave``: leave a room."""

    id: RequestId
    room_id: RoomID


@_frozen
class Rooms:
    """``rooms``: list the caller's rooms."""

    id: RequestId


@_frozen
class Send:
    """``send``: post a text message, idempotent per account and ``txn_id``."""

    id: RequestId
    room_id: RoomID
    txn_id: str
    body: str


@_frozen
class History:
    """``history``: page one room; ``dir`` "b" (newest first) or "f"; ``from_pos`` is ``from``."""

    id: RequestId
    room_id: RoomID
    dir: str = "b"
    from_pos: Optional[int] = None
    limit: int = 50


@_frozen
class Sync:
    """``sync``: go live, first replaying events after stream position ``since``."""

    id: RequestId
    since: Optional[int] = None


Request = Union[Register, Login, Auth, Logout, Ping, CreateRoom, Invite, Join, Leave, Rooms, Send, History, Sync]

_ABSENT = object()


def _str(frame: Dict[str, Any], name: str, *, min_len: int = 0, max_len: Optional[int] = None,
         optional: bool = False) -> Optional[str]:  # fmt: skip
    """Read a string field with a length in characters; None if optional and absent/null."""
    value = frame.get(name, _ABSENT)
    if value is _ABSENT or (value is None and optional):
        if optional:
            return None
        raise MissingField(f"{name} is required", name)
    if type(value) is not str:
        raise BadField(f"{name} must be a string", name)
    n = len(value)
    if n < min_len:
        raise BadField(f"{name} must not be empty" if min_len == 1 else f"{name} must be at least {min_len} characters", name)
    if max_len is not None and n > max_len:
        raise BadField(f"{name} must be at most {max_len} characters", name)
    return value


def _int(frame: Dict[str, Any], name: str, default: Optional[int], low: int, high: Optional[int]) -> Optional[int]:
    """Read an optional integer field in ``low..high``; ``default`` if absent/null."""
    value = frame.get(name)
    if value is None:
        return default
    if type(value) is not int:
        raise BadField(f"{name} must be an integer", name)
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise BadField(f"{name} must be {span}", name)
    return value


def _room_id(frame: Dict[str, Any]) -> RoomID:
    """Read the required ``room_id`` field."""
    if "room_id" not in frame:
        raise MissingField("room_id is required", "room_id")
    return RoomID.parse(frame["room_id"], field="room_id")


def _parse_register(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``register: pseudonym, password, device_name?, invite_code?``."""
    return Register(rid, _str(frame, "pseudonym"), _str(frame, "password"),
                    _str(frame, "device_name", max_len=100, optional=True),
                    _str(frame, "invite_code", max_len=64, optional=True))  # fmt: skip


def _parse_login(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``login: pseudonym, password, device_name?``."""
    return Login(rid, _str(frame, "pseudonym"), _str(frame, "password"),
                 _str(frame, "device_name", max_len=100, optional=True))  # fmt: skip


def _parse_auth(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``auth: token``."""
    return Auth(rid, _str(frame, "token"))


def _parse_create_room(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``create_room: kind, name, topic?, public?``."""
    kind = _str(frame, "kind")
    if kind not in CLIENT_ROOM_KINDS:
        raise BadField(f"kind must be one of {', '.join(CLIENT_ROOM_KINDS)}", "kind")
    name = _str(frame, "name", min_len=1, max_len=255)
    topic = _str(frame, "topic", max_len=1000, optional=True)
    public = frame.get("public")
    if public is None:
        public = False
    elif type(public) is not bool:
        raise BadField("public must be true or false", "public")
    service_id = frame.get("service_id")
    return CreateRoom(rid, kind, name, topic, public,
                      None if service_id is None else RoomID.parse(service_id, field="service_id"))


def _parse_invite(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``invite: room_id, user_id``."""
    room_id = _room_id(frame)
    if "user_id" not in frame:
        raise MissingField("user_id is required", "user_id")
    return Invite(rid, room_id, UserID.parse(frame["user_id"], field="user_id"))


def _parse_send(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``send: room_id, txn_id, body``."""
    return Send(rid, _room_id(frame), _str(frame, "txn_id", min_len=1, max_len=64), _str(frame, "body", min_len=1))


def _parse_history(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``history: room_id, dir?, from?, limit?``."""
    room_id = _room_id(frame)
    direction = frame.get("dir")
    if direction is None:
        direction = "b"
    elif direction != "b" and direction != "f":
        raise BadField('dir must be "b" or "f"', "dir")
    return History(rid, room_id, direction, _int(frame, "from", None, 0, None), _int(frame, "limit", 50, 1, 100))


def _parse_sync(frame: Dict[str, Any], rid: RequestId) -> Request:
    """Fields of ``sync: since?``."""
    return Sync(rid, _int(frame, "since", None, 0, None))


_PARSERS: Dict[str, Callable[[Dict[str, Any], RequestId], Request]] = {
    "register": _parse_register,
    "login": _parse_login,
    "auth": _parse_auth,
    "logout": lambda frame, rid: Logout(rid),
    "ping": lambda frame, rid: Ping(rid),
    "create_room": _parse_create_room,
    "invite": _parse_invite,
    "join": lambda frame, rid: Join(rid, _room_id(frame)),
    "leave": lambda frame, rid: Leave(rid, _room_id(frame)),
    "rooms": lambda frame, rid: Rooms(rid),
    "send": _parse_send,
    "history": _parse_history,
    "sync": _parse_sync,
}


def register_request(op: str, parser: Callable[[Dict[str, Any], RequestId], Any]) -> None:
    """Add an operation: ``parser(frame, request_id)`` returns its typed request or raises.

    Feature modules (forums, media, ...) register their operations at import time; an op
    can be registered once only.
    """
    if op in _PARSERS:
        raise ValueError(f"op {op!r} is already registered")
    _PARSERS[op] = parser


def read_str(frame: Dict[str, Any], name: str, *, min_len: int = 0, max_len: Optional[int] = None,
             optional: bool = False) -> Optional[str]:
    """A string field with a length in characters (MissingField/BadField naming ``name``)."""
    return _str(frame, name, min_len=min_len, max_len=max_len, optional=optional)


def read_int(frame: Dict[str, Any], name: str, default: Optional[int], low: int, high: Optional[int]) -> Optional[int]:
    """An optional integer field in ``low..high``; ``default`` if absent or null."""
    return _int(frame, name, default, low, high)


def read_bool(frame: Dict[str, Any], name: str, default: bool) -> bool:
    """An optional boolean field; ``default`` if absent or null."""
    value = frame.get(name)
    if value is None:
        return default
    if type(value) is not bool:
        raise BadField(f"{name} must be true or false", name)
    return value


def read_room_id(frame: Dict[str, Any], name: str = "room_id") -> RoomID:
    """A required room ID field."""
    if name not in frame:
        raise MissingField(f"{name} is required", name)
    return RoomID.parse(frame[name], field=name)


def read_user_id(frame: Dict[str, Any], name: str = "user_id") -> UserID:
    """A required user ID field."""
    if name not in frame:
        raise MissingField(f"{name} is required", name)
    return UserID.parse(frame[name], field=name)


def read_event_id(frame: Dict[str, Any], name: str = "event_id") -> EventID:
    """A required event ID field."""
    if name not in frame:
        raise MissingField(f"{name} is required", name)
    return EventID.parse(frame[name], field=name)


def _valid_id(value: Any) -> bool:
    """True if ``value`` is an acceptable request id."""
    t = type(value)
    if t is int:
        return 0 <= value <= MAX_REQUEST_ID
    return t is str and len(value) <= MAX_REQUEST_ID_CHARS


def parse_request(frame: Any) -> Request:
    """The typed request in a decoded frame; raises BadFrame, UnknownOp, MissingField or BadField."""
    if type(frame) is not dict:
        raise BadFrame("a frame must be an object")
    op = frame.get("op")
    if type(op) is not str:
        raise BadFrame("a frame needs a string op" if op is None else "op must be a string", "op")
    rid = frame.get("id")
    if not _valid_id(rid):
        raise BadFrame(
            f"id must be an integer in 0..{MAX_REQUEST_ID} or a string of at most {MAX_REQUEST_ID_CHARS} characters",
            "id",
        )
    parser = _PARSERS.get(op)
    if parser is None:
        raise UnknownOp(f"unknown op {op[:64]!r}", "op")
    return parser(frame, rid)


def read_request_id(frame: Any) -> Optional[RequestId]:
    """The frame's request id if it is a valid one, else None; never raises."""
    if type(frame) is not dict:
        return None
    rid = frame.get("id")
    return rid if _valid_id(rid) else None


# --------------------------------------------------------------------------- replies


def ok_frame(request_id: Optional[RequestId], result: Dict[str, Any]) -> Dict[str, Any]:
    """``{"op": "ok", "id": ..., **result}``; ``result`` must not use the keys op or id."""
    if "op" in result or "id" in result:
        raise ValueError("an ok result must not contain 'op' or 'id'")
    frame = {"op": "ok", "id": request_id}
    frame.update(result)
    return frame


def error_frame(request_id: Optional[RequestId], err: SharonError) -> Dict[str, Any]:
    """``{"op": "error", "id": ..., "code", "reason", "field"?}`` for ``err``."""
    frame: Dict[str, Any] = {"op": "error", "id": request_id, "code": err.code, "reason": err.reason}
    if err.field is not None:
        frame["field"] = err.field
    return frame


def event_frame(client_event: Dict[str, Any]) -> Dict[str, Any]:
    """``{"op": "event", "event": client_event}`` (a push; no id)."""
    return {"op": "event", "event": client_event}
