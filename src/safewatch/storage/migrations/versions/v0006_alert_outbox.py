"""Alert outbox: one row per delivery of an alert to a channel, written with the incident change.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=True),
        sa.Column("route_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.Double(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("digest_id", sa.String(100), nullable=True),
    )
    op.create_index("ix_alert_outbox_status_due", "alert_outbox", ["status", "due_at"])
    op.create_index("ix_alert_outbox_incident", "alert_outbox", ["incident_id"])
    op.create_index("ix_alert_outbox_route", "alert_outbox", ["route_id", "channel", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_route", table_name="alert_outbox")
    op.drop_index("ix_alert_outbox_incident", table_name="alert_outbox")
    op.drop_index("ix_alert_outbox_status_due", table_name="alert_outbox")
    op.drop_table("alert_outbox")
