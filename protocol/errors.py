"""One error hierarchy with stable, machine-readable codes for every layer.

Each error carries a ``code`` (stable string, documented in docs/protocol.md), an HTTP
status, an optional ``field`` naming the offending input, and a human ``reason``.  The
server turns any ``SharonError`` into exactly one error frame or HTTP error body.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = [
    "SharonError",
    "BadRequest",
    "BadJSON",
    "BadMsgpack",
    "BadFrame",
    "BadField",
    "MissingField",
    "UnknownOp",
    "TooLarge",
    "BadEvent",
    "BadSignature",
    "BadHash",
    "UnsupportedRoomVersion",
    "NotAuthenticated",
    "UnknownToken",
    "BadCredentials",
    "Forbidden",
    "NotInRoom",
    "NotFound",
    "RoomNotFound",
    "Conflict",
    "PseudonymTaken",
    "InvalidPseudonym",
    "WeakPassword",
    "RateLimited",
    "Unavailable",
    "InternalError",
    "ERROR_CODES",
]


class SharonError(Exception):
    """Base of every error the server reports to a peer; ``code`` is stable."""

    code: str = "internal"
    http_status: int = 500

    def __init__(self, reason: str, field: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def to_dict(self) -> Dict[str, Any]:
        """The error as the body of an error frame or HTTP response."""
        body: Dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.field is not None:
            body["field"] = self.field
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, field={self.field!r}, reason={self.reason!r})"


class BadRequest(SharonError):
    """The input is not acceptable as sent."""

    code = "bad_request"
    http_status = 400


class BadJSON(BadRequest):
    """The bytes are not strict canonical-compatible JSON (floats, duplicates, NaN, ...)."""

    code = "bad_json"


class BadMsgpack(BadRequest):
    """The bytes are not valid msgpack of the JSON data model."""

    code = "bad_msgpack"


class BadFrame(BadRequest):
    """The frame is not an object with a string ``op``."""

    code = "bad_frame"


class BadField(BadRequest):
    """A field has the wrong type or an unacceptable value; ``field`` names it."""

    code = "bad_field"


class MissingField(BadRequest):
    """A required field is absent; ``field`` names it."""

    code = "missing_field"


class UnknownOp(BadRequest):
    """The frame's ``op`` is not one the server implements."""

    code = "unknown_op"


class TooLarge(BadRequest):
    """The frame, body or event is larger than the published limit."""

    code = "too_large"
    http_status = 413


class BadEvent(BadRequest):
    """An event does not have the ``ps1`` format (sizes, fields, types)."""

    code = "bad_event"


class BadSignature(BadRequest):
    """A signature is missing or does not verify."""

    code = "bad_signature"
    http_status = 401


class BadHash(BadRequest):
    """An event's content hash does not match its content."""

    code = "bad_hash"


class UnsupportedRoomVersion(BadRequest):
    """The room version is not exactly one this server implements."""

    code = "unsupported_room_version"


class NotAuthenticated(SharonError):
    """The operation needs an authenticated session."""

    code = "not_authenticated"
    http_status = 401


class UnknownToken(NotAuthenticated):
    """The access token is unknown, logged out or malformed."""

    code = "unknown_token"


class BadCredentials(NotAuthenticated):
    """The pseudonym and password do not match an account."""

    code = "bad_credentials"


class Forbidden(SharonError):
    """The caller is authenticated but not allowed to do this."""

    code = "forbidden"
    http_status = 403


class NotInRoom(Forbidden):
    """The caller is not joined to the room the operation names."""

    code = "not_in_room"


class NotFound(SharonError):
    """The named thing does not exist (or is not visible to the caller)."""

    code = "not_found"
    http_status = 404


class RoomNotFound(NotFound):
    """No room with that ID exists on this server."""

    code = "room_not_found"


class Conflict(SharonError):
    """The request conflicts with existing state."""

    code = "conflict"
    http_status = 409


class PseudonymTaken(Conflict):
    """Another account already uses that pseudonym (compared case-insensitively)."""

    code = "pseudonym_taken"


class InvalidPseudonym(BadField):
    """The pseudonym breaks the pseudonym rules (length, characters)."""

    code = "invalid_pseudonym"


class WeakPassword(BadField):
    """The password is too short or too long."""

    code = "weak_password"


class RateLimited(SharonError):
    """Too many requests; retry later."""

    code = "rate_limited"
    http_status = 429


class Unavailable(SharonError):
    """The server is shutting down or overloaded; retry later."""

    code = "unavailable"
    http_status = 503


class InternalError(SharonError):
    """An unexpected server fault; details are in the server log, not the response."""

    code = "internal"
    http_status = 500


# -- errors of invites and pseudonyms (#5) --


class PseudonymRejected(BadField):
    """The pseudonym fails screening (blocked word, staff title, or identifying pattern such
    as an email address, phone number, NHS-number-like digits, a URL or the invited person's
    own name or birth date); the reason names the rule, never the matched data."""

    code = "pseudonym_rejected"


class InviteCodeInvalid(BadField):
    """``invite_code`` is malformed or matches no invite on this server."""

    code = "invite_code_invalid"


class InviteCodeExpired(BadField):
    """``invite_code`` names an invite whose time ran out; ask the clinician for a new one."""

    code = "invite_code_expired"


class InviteCodeUsed(BadField):
    """``invite_code`` was already redeemed: one code makes one account."""

    code = "invite_code_used"


class InviteCodeRevoked(BadField):
    """``invite_code`` names an invite its service revoked."""

    code = "invite_code_revoked"


class InviteNotFound(NotFound):
    """No invite with that ``invite_id`` exists (or the caller may not see it)."""

    code = "invite_not_found"


class InviteNotPending(Conflict):
    """The invite was already used, revoked or has expired, so it cannot be revoked."""

    code = "invite_not_pending"


# -- errors of staff access and unmasking (#5) --

class UnmaskNotApproved(Conflict):
    """The unmask request has not been approved (pending or refused): no identity to view."""

    code = "unmask_not_approved"


class UnmaskExpired(Forbidden):
    """The approved unmask's viewing window (``unmask_ttl_ms``) has passed."""

    code = "unmask_expired"


class UnmaskSelfApproval(Forbidden):
    """Staff cannot approve their own unmask request: a different staff member must."""

    code = "unmask_self_approval"


class UnmaskDecided(Conflict):
    """The unmask request was already approved, refused or expired."""

    code = "unmask_decided"


class UnmaskTooManyOpen(Conflict):
    """The staff member already has the most open unmask requests (pending, or approved and
    still viewable) one person may have; wait for some to be decided or to expire."""

    code = "unmask_too_many_open"


class NoIdentity(NotFound):
    """The identity vault holds no real identity for that member."""

    code = "no_identity"


# -- errors of risk detection and member controls (#6) --


class CannotBlockStaff(Forbidden):
    """Staff of a service you share (and server admins) cannot be blocked: safety and
    moderation messages must reach every member. Report a staff member instead."""

    code = "cannot_block_staff"


class TooManyBlocks(Conflict):
    """The member already blocks the most members one account may block."""

    code = "too_many_blocks"


# -- errors of reports and triage (#6) --

class TriageItemNotFound(NotFound):
    """No open triage item has that ID (it never existed, or its case is closed)."""

    code = "triage_item_not_found"


class TriageItemClaimed(Conflict):
    """Another staff member has claimed the item; only they (or an admin) may work it."""

    code = "triage_item_claimed"


class AlreadyReported(Conflict):
    """The caller already has an open report on this target; the case is being looked at."""

    code = "already_reported"


class ReportNoService(BadField):
    """The reported room belongs to no service, so no service's moderators can take it."""

    code = "report_no_service"


class NoClinician(NotFound):
    """The service has no clinician to escalate to."""

    code = "no_clinician"


# -- errors of moderation and sanctions (#6) --


class UnknownRule(BadField):
    """``rule`` names no rule of the service's house rules (the reason lists the IDs)."""

    code = "unknown_rule"


class Muted(Forbidden):
    """The sender is muted in this service; the reason names until when."""

    code = "muted"


class Suspended(Forbidden):
    """The account is suspended: it cannot log in or use its sessions until the named time."""

    code = "suspended"


class Banned(Forbidden):
    """The user is banned from this service and cannot join it or its rooms."""

    code = "banned"


class AlreadyDecided(Conflict):
    """The held post, sanction or appeal was already decided (approved, rejected, lifted)."""

    code = "already_decided"


class AppealExists(Conflict):
    """This sanction already has an appeal: each sanction can be appealed once."""

    code = "appeal_exists"


class SameModerator(Forbidden):
    """An appeal must be decided by a moderator other than the one who issued the sanction."""

    code = "same_moderator"


def _collect() -> Dict[str, type]:
    seen: Dict[str, type] = {}
    stack = [SharonError]
    while stack:
        cls = stack.pop()
        seen[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return seen


ERROR_CODES: Dict[str, type] = _collect()
"""Every stable error code mapped to its class (docs/protocol.md lists them)."""
