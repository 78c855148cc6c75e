"""Clinician invites and discharge (#5): request types, the code format, the setting (pure).

- ``invite_create {service_id, role, identity, note?}``: a clinician or admin of the service
  invites a person; the identity is validated with ``protocol.identity.Identity`` and goes
  only to the encrypted vault. The reply carries the code once.
- ``invite_list {service_id}`` / ``invite_revoke {invite_id}``: staff manage invites; no
  identity ever appears in them.
- ``register`` / ``POST /api/v1/register`` take an optional ``invite_code``.
- ``service_discharge {service_id, user_id, reason}``: a clinician or admin of the service
  discharges a member according to the service's ``discharge_policy`` setting.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

import attr

from protocol import spaces
from protocol.errors import BadField, InviteCodeInvalid, MissingField
from protocol.frames import RequestId, read_room_id, read_str, read_user_id, register_request
from protocol.ids import RoomID, UserID

__all__ = [
    "INVITE_ROLES", "INVITER_ROLES", "DISCHARGER_ROLES", "DISCHARGE_POLICIES", "CODE_PREFIX",
    "MAX_NOTE", "MAX_REASON", "MAX_LIST", "check_code", "invite_link", "discharge_notice", "discharged_frame",
    "InviteCreate", "InviteList", "InviteRevoke", "ServiceDischarge", "DischargeNotices",
]

INVITE_ROLES = ("member", "carer")
"""Roles an invite may carry: the people a clinician brings into care. Peers and staff are
appointed with ``service_add_member``, not by invite."""

INVITER_ROLES = frozenset({"clinician", "admin"})
"""Who may invite into and discharge from a service: its clinicians (they hold the care
relationship and the identity) and its admins. Moderators keep the peer space safe but do
not hold clinical records, so they neither invite nor discharge."""

DISCHARGER_ROLES = INVITER_ROLES

DISCHARGE_POLICIES = ("close", "keep")
"""``close``: the member leaves the service and every room of it (their posts stay);
``keep``: the member stays as a peer member, the discharge is recorded for staff only."""

CODE_PREFIX = "inv_"
_CODE_RE = re.compile(r"^inv_[A-Za-z0-9_-]{32}$")
"""``inv_`` + 32 URL-safe base64 characters: 192 random bits."""

MAX_NOTE = 200
MAX_REASON = 500
MAX_LIST = 200
"""``invite_list`` returns at most this many invites, newest first."""


def _validate_policy(value: Any, field: str) -> str:
    if value not in DISCHARGE_POLICIES:
        raise BadField(f"{field} must be one of: {', '.join(DISCHARGE_POLICIES)}", field)
    return value


spaces.register_setting("discharge_policy", "close", _validate_policy)


def check_code(value: Any) -> str:
    """The invite code if it has the right shape; InviteCodeInvalid (field ``invite_code``)."""
    if type(value) is not str or not _CODE_RE.match(value):
        raise InviteCodeInvalid("invite_code is not a valid invite code", "invite_code")
    return value


def invite_link(server_name: str, code: str) -> str:
    """The link form of a code: the code is in the fragment, which browsers never send."""
    return f"https://{server_name}/join#{code}"


def discharge_notice(service_id: str, service_name: str, policy: str, ts: int) -> Dict[str, Any]:
    """The plain-words notice a discharged member sees (never the reason or who)."""
    if policy == "close":
        text = (f"You have been discharged from {service_name}. You no longer have access to its rooms; "
                "what you posted stays. If this is a mistake, or you need support, contact your care team.")
    else:
        text = (f"You have been discharged from {service_name}'s care team. You can still take part in "
                "its rooms as a peer member. If you need support, contact your care team.")
    return {"service_id": service_id, "policy": policy, "ts": ts, "message": text}


def discharged_frame(notice: Dict[str, Any]) -> Dict[str, Any]:
    """``{"op": "service_discharged", service_id, policy, ts, message}``: the live push."""
    return {"op": "service_discharged", **notice}


_frozen = attr.s(frozen=True, slots=True, auto_attribs=True)


@_frozen
class InviteCreate:
    """``invite_create``: a clinician or admin invites a person into their service."""

    id: RequestId
    service_id: RoomID
    role: str
    identity: Dict[str, Any] = attr.ib(repr=False)
    note: Optional[str] = None


@_frozen
class InviteList:
    """``invite_list``: the service's invites (no identities)."""

    id: RequestId
    service_id: RoomID


@_frozen
class InviteRevoke:
    """``invite_revoke``: withdraw a pending invite."""

    id: RequestId
    invite_id: str


@_frozen
class DischargeNotices:
    """``discharge_notices``: the caller's own discharge notices (plain words, no reason)."""

    id: RequestId


@_frozen
class ServiceDischarge:
    """``service_discharge``: a clinician or admin discharges a member from the service."""

    id: RequestId
    service_id: RoomID
    user_id: UserID
    reason: str


def _invite_role(frame: Dict[str, Any]) -> str:
    role = read_str(frame, "role", optional=True) or "member"
    if role not in INVITE_ROLES:
        raise BadField(f"role must be one of: {', '.join(INVITE_ROLES)}", "role")
    return role


def _identity(frame: Dict[str, Any]) -> Dict[str, Any]:
    if "identity" not in frame:
        raise MissingField("identity is required", "identity")
    value = frame["identity"]
    if type(value) is not dict:
        raise BadField("identity must be an object", "identity")
    return value


register_request("invite_create", lambda f, rid: InviteCreate(
    rid, read_room_id(f, "service_id"), _invite_role(f), _identity(f),
    read_str(f, "note", max_len=MAX_NOTE, optional=True)))
register_request("invite_list", lambda f, rid: InviteList(rid, read_room_id(f, "service_id")))
register_request("invite_revoke", lambda f, rid: InviteRevoke(
    rid, read_str(f, "invite_id", min_len=1, max_len=64)))
register_request("discharge_notices", lambda f, rid: DischargeNotices(rid))
register_request("service_discharge", lambda f, rid: ServiceDischarge(
    rid, read_room_id(f, "service_id"), read_user_id(f), read_str(f, "reason", min_len=1, max_len=MAX_REASON)))
