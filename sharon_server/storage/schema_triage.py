"""Tables of reports, the triage queue and the duty rota (#6), on the shared metadata.

Open items are also kept in memory (``sharon_server.features.triage``) and reloaded from
``triage_items`` at start-up; these tables are the durable record. Timestamps are ms since
the epoch; risk scores are per mille.
"""

from __future__ import annotations

import sqlalchemy as sa

from sharon_server.storage.schema import metadata

__all__ = ["triage_items", "triage_reports", "triage_duty"]

_BOOL = sa.Boolean(create_constraint=False)

triage_items = sa.Table(
    "triage_items",
    metadata,
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("kinds", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=True),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("subject_user", sa.Text, nullable=True),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("risk_score", sa.Integer, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("ref", sa.Text, nullable=True),
    sa.Column("hits", sa.Integer, nullable=False),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("updated_ts", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("claimed_by", sa.Text, nullable=True),
    sa.Column("escalated_ts", sa.BigInteger, nullable=True),
    sa.Column("offer_stage", sa.Integer, nullable=False),
    sa.Column("hidden", _BOOL, nullable=False),
    sa.Column("resolved_by", sa.Text, nullable=True),
    sa.Column("resolved_ts", sa.BigInteger, nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Index("ix_triage_items_status_service_id", "status", "service_id"),
    sa.Index("ix_triage_items_event_id", "event_id"),
)
"""One case per target (an event, or a member in a room): ``status`` is open, claimed or
resolved; ``kinds`` lists where it came from (report, risk, premod, unanswered)."""

triage_reports = sa.Table(
    "triage_reports",
    metadata,
    sa.Column("report_id", sa.Text, primary_key=True),
    sa.Column("item_id", sa.Text, nullable=False),
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("reporter", sa.Text, nullable=False),
    sa.Column("room_id", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=True),
    sa.Column("user_id", sa.Text, nullable=True),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_ts", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.Text, nullable=True),
    sa.Column("closed_ts", sa.BigInteger, nullable=True),
    sa.Index("ix_triage_reports_item_id", "item_id"),
    sa.Index("ix_triage_reports_reporter_created_ts", "reporter", "created_ts"),
)
"""Members' reports; the reporter is never shown to the reported member."""

triage_duty = sa.Table(
    "triage_duty",
    metadata,
    sa.Column("service_id", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("since_ts", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("service_id", "user_id"),
)
"""Staff who marked themselves on duty (a row is deleted when they go off duty)."""
