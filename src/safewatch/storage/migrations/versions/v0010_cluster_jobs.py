"""Cluster: audit and backtest jobs claimed by analyzers with a free job slot.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("video", sa.String(256), nullable=False),
        sa.Column("submitted_by", sa.String(128), nullable=False),
        sa.Column("submitted_at", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("frames_done", sa.BigInteger(), nullable=False),
        sa.Column("frames_total", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("message", sa.String(2048), nullable=False),
        sa.Column("incidents", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.Double(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("result_prefix", sa.String(256), nullable=True),
    )
    op.create_index("ix_cluster_jobs_state", "cluster_jobs", ["state", "submitted_at"])


def downgrade() -> None:
    op.drop_index("ix_cluster_jobs_state", table_name="cluster_jobs")
    op.drop_table("cluster_jobs")
