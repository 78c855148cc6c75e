"""Tables of clinician invites and discharges (#5), on the shared metadata.

``service_invites`` holds no identity: the invited person's identity is in the encrypted
vault under the key ``invite:<invite_id>`` until the code is redeemed, then under the new
member's user ID. The code itself is stored only as its SHA-256 (it has 192 random bits).
``service_discharges`` records who discharged whom from which service, when and why.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["service_invites", "service_discharges"]

service_invites = sa.Table(
    "service_invites",
    metadata,
    sa.Column("invite_id", sa.Text, primary_key=True),
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("code_hash", sa.LargeBinary, nullable=False, unique=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("expires_ts", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("used_by", sa.Text, nullable=True),
    sa.Column("closed_by", sa.Text, nullable=True),
    sa.Column("closed_ts", sa.BigInteger, nullable=True),
    sa.Index("ix_service_invites_service", "service_id", "created_ts"),
    sa.Index("ix_service_invites_status", "status", "expires_ts"),
)
"""One row per invite; ``status``: pending, claimed (a redemption in progress), used,
revoked, expired. ``closed_by``/``closed_ts``: who revoked it, or who redeemed it and when."""

service_discharges = sa.Table(
    "service_discharges",
    metadata,
    sa.Column("discharge_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("discharged_by", sa.Text, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("policy", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_service_discharges_member", "service_id", "user_id"),
)
"""Who discharged which member from which service, when, under which policy, and why."""
