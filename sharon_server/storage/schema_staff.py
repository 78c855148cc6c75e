"""Tables of staff access and unmasking (#5), on the shared metadata."""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["staff_observers", "unmask_requests"]

staff_observers = sa.Table(
    "staff_observers",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("room_id", sa.Text, primary_key=True),
    sa.Column("visible", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("since_ts", sa.BigInteger, nullable=False),
)
"""Rooms a staff member observes (``visible`` false) or joined as staff (true)."""

unmask_requests = sa.Table(
    "unmask_requests",
    metadata,
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("member_id", sa.Text, nullable=False),
    sa.Column("requester", sa.Text, nullable=False),
    sa.Column("reason_code", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("decided_ts", sa.BigInteger, nullable=True),
    sa.Column("decision_reason", sa.Text, nullable=True),
    sa.Column("expires_ts", sa.BigInteger, nullable=True),
    sa.Index("ix_unmask_requests_service", "service_id", "created_ts"),
)
"""Unmask requests: pending -> approved (viewable until expires_ts) | refused; expired once seen late."""
