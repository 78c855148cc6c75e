"""The seam through which features (forums, walls, blogs, mentions, ...) add event types.

A feature registers an ``EventType`` for each event type clients may send with
``send_event``. The room service calls, in order:

1. ``prepare(ctx)`` before the event is built: validate and normalise ``ctx.content``
   (raise a ``SharonError`` naming the field), check permissions the auth rules cannot
   express (e.g. "only the author edits a blog post"). May be ``async`` when it must read
   storage; keep it synchronous when it can, so the hot path stays free of awaits.
2. ``derive(ctx, event_id, pos, event)`` while the event is applied: rows derived from the
   event (thread index, tags, notifications) as ``(statement, [params])`` pairs, written in
   the same transaction as the event.
3. ``committed(ctx, event_id, pos, event)`` after the commit: live side effects such as
   pushing notifications.

Observers (``rooms.observers``) are EventTypes whose three hooks run for EVERY event sent
through ``send_event``, after the event's own type: mentions, hashtags, search indexing and
notifications are observers.

Conventions on ``ctx.scratch`` (set in ``prepare``, read by observers):

- ``scratch["notify"]``: list of ``(user_id, reason)`` the event should notify, e.g.
  ``(post_author, "reply")``; the notifications observer turns them into rows and pushes.
- ``scratch["text"]``: list of strings to index for search and to scan for mentions and
  hashtags (defaults to ``content["body"]`` and ``content["title"]`` when absent).
- ``scratch["service"]``: the service ID of the room (set by the services feature).
- ``scratch["hold"]``: a reason string set by a moderation observer in ``prepare`` when the
  event must be held for review instead of committed; ``send_event`` then hands the context
  to ``rooms.hold_handler``, which stores it and returns the reply the sender gets (raised
  as ``HeldForReview``). ``ctx.approved`` is True when a moderator's approval re-sends a
  held event: hold rules must not hold it again.

Guards let features veto joins and room creation (e.g. "only members of the service").
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

import attr

__all__ = ["SendContext", "EventType", "Derived", "JoinGuard", "CreateGuard", "ReadGuard",
           "EventFilter", "HeldForReview"]

Derived = List[Tuple[Any, List[Dict[str, Any]]]]
"""Rows derived from an event: ``(SQLAlchemy statement, [params, ...])`` pairs."""


@attr.s(slots=True, auto_attribs=True)
class SendContext:
    """Everything a hook may need about one event being sent."""

    session: Any
    room_id: str
    kind: str
    state: Any
    etype: str
    content: Dict[str, Any]
    state_key: Optional[str] = None
    scratch: Dict[str, Any] = attr.Factory(dict)
    txn_id: Optional[str] = None
    approved: bool = False
    """True when a held event is being released by a moderator's approval."""


class EventType:
    """Base class for a sendable event type; override what the type needs."""

    etype: str = ""
    kinds: Optional[FrozenSet[str]] = None
    """Room kinds this type may be sent in (None: every kind)."""
    state_event: bool = False

    def prepare(self, ctx: SendContext) -> Union[None, Awaitable[None]]:
        """Validate and normalise ``ctx.content`` in place; raise SharonError to refuse."""
        return None

    def derive(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> Derived:
        """Rows to write in the event's own transaction."""
        return []

    def committed(self, ctx: SendContext, event_id: str, pos: int, event: Dict[str, Any]) -> None:
        """Live side effects once the event is durable."""
        return None


JoinGuard = Callable[[str, str, Any], Union[None, Awaitable[None]]]
"""``guard(user_id, room_id, state)``: raise a SharonError to refuse that user joining or
being invited to the room."""

CreateGuard = Callable[[Any, str, Dict[str, Any]], Union[None, Awaitable[None]]]
"""``guard(session, kind, options)``: raise to refuse creating a room; may add to options."""


ReadGuard = Callable[[str, str], bool]
"""``guard(user_id, room_id)``: True lets a user who is not joined read the room's history
(moderators observing a room); any guard returning True is enough."""

EventFilter = Callable[[str, str, Dict[str, Any]], Optional[Dict[str, Any]]]
"""``filter(viewer_id, room_id, client_event)``: the event as this viewer may see it in
history and resume replay (e.g. a hidden post replaced by a placeholder for peers, shown
with moderation notes to staff), or None to leave it out."""


class HeldForReview(Exception):
    """Raised by ``send_event`` when an event was held for review instead of committed.

    ``result`` is the reply the sender gets (``{"held": true, "held_id": ...}``): the
    WebSocket layer answers the request with an ok frame carrying it.
    """

    def __init__(self, result: Dict[str, Any]) -> None:
        super().__init__("held for review")
        self.result = result
