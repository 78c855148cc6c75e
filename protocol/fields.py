"""Field-table request classes (pure): the readers and the class factory that
protocol/content.py and protocol/moderation.py both build their requests from.

A reader takes the request frame and returns one field's value (or raises BadField /
MissingField naming the field); ``make_request`` turns an op name and an ordered table of
readers into a frozen attrs class and registers its parser with ``register_request``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import attr

from protocol.frames import read_event_id, read_room_id, read_str, read_user_id, register_request

__all__ = ["Reader", "text", "room", "user", "event", "make_request"]

Reader = Callable[[Dict[str, Any]], Any]


def text(name: str, lo: int = 0, hi: Optional[int] = None, optional: bool = False) -> Reader:
    """A string field of ``lo``..``hi`` characters (None when optional and absent)."""
    return lambda f: read_str(f, name, min_len=lo, max_len=hi, optional=optional)


def _id_reader(read: Callable[[Dict[str, Any], str], Any], name: str, optional: bool) -> Reader:
    def reader(f: Dict[str, Any]) -> Optional[str]:
        if optional and f.get(name) is None:
            return None
        return str(read(f, name))
    return reader


def room(name: str = "room_id", optional: bool = False) -> Reader:
    """A room ID field, as a string."""
    return _id_reader(read_room_id, name, optional)


def user(name: str = "user_id", optional: bool = False) -> Reader:
    """A user ID field, as a string."""
    return _id_reader(read_user_id, name, optional)


def event(name: str = "event_id", optional: bool = False) -> Reader:
    """An event ID field, as a string."""
    return _id_reader(read_event_id, name, optional)


def make_request(registry: Dict[str, type], op: str, doc: str, **fields: Reader) -> type:
    """Define the request class for ``op`` with ``fields`` read in order, register its
    parser and record it in ``registry`` (op name -> class)."""
    name = "".join(part.capitalize() for part in op.split("_"))
    cls = attr.make_class(name, ["id", *fields], frozen=True, slots=True)
    cls.__doc__ = doc
    readers: Tuple[Reader, ...] = tuple(fields.values())
    register_request(op, lambda f, rid: cls(rid, *(r(f) for r in readers)))
    registry[op] = cls
    return cls
