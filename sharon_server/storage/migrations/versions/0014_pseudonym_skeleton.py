"""Look-alike pseudonyms, notices in the notification feed, withheld search documents.

- ``accounts.pseudonym_skeleton`` (unique): the pseudonym's look-alike form, backfilled
  here; when two existing accounts already share a skeleton the older keeps it and the
  newer gets NULL (a new sign-up is still refused against the older one's skeleton).
- ``notifications.payload``: the JSON of a notice (sanction, held-post decision, report
  outcome, discharge), which has no event.
- ``search_withheld``: search documents of hidden events, restored on unhide.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_POS = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the skeleton column (backfilled) and the notice payload; create search_withheld."""
    from sharon_server.accounts import pseudonym_skeleton

    op.add_column("accounts", sa.Column("pseudonym_skeleton", sa.Text, nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT user_id, pseudonym FROM accounts ORDER BY created_ts, user_id")).all()
    seen = set()
    for user_id, pseudonym in rows:
        skeleton = pseudonym_skeleton(pseudonym)
        if skeleton in seen:
            continue  # an older account already has this skeleton: this one keeps NULL
        seen.add(skeleton)
        bind.execute(sa.text("UPDATE accounts SET pseudonym_skeleton = :s WHERE user_id = :u"),
                     {"s": skeleton, "u": user_id})
    op.create_index("ux_accounts_pseudonym_skeleton", "accounts", ["pseudonym_skeleton"], unique=True)
    op.add_column("notifications", sa.Column("payload", sa.Text, nullable=True))
    op.create_table(
        "search_withheld",
        sa.Column("pos", _POS, nullable=False, autoincrement=False),
        sa.Column("room_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("pos", name="pk_search_withheld"),
    )
    op.create_index("ix_search_withheld_event_id", "search_withheld", ["event_id"])


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index("ix_search_withheld_event_id", table_name="search_withheld")
    op.drop_table("search_withheld")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("payload")
    op.drop_index("ux_accounts_pseudonym_skeleton", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("pseudonym_skeleton")
