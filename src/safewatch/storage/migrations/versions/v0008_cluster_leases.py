"""Cluster: analyzers, camera leases (owner, epoch, expiry) and coverage gaps.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_analyzers",
        sa.Column("analyzer_id", sa.String(128), primary_key=True),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_table(
        "camera_leases",
        sa.Column("camera_id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("acquired_at", sa.Double(), nullable=False),
        sa.Column("renewed_at", sa.Double(), nullable=False),
        sa.Column("released_at", sa.Double(), nullable=True),
        sa.Column("released_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_camera_leases_owner", "camera_leases", ["owner"])
    op.create_table(
        "coverage_gaps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("previous_owner", sa.String(128), nullable=True),
        sa.Column("new_owner", sa.String(128), nullable=False),
    )
    op.create_index("ix_coverage_gaps_camera", "coverage_gaps", ["camera_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_coverage_gaps_camera", table_name="coverage_gaps")
    op.drop_table("coverage_gaps")
    op.drop_index("ix_camera_leases_owner", table_name="camera_leases")
    op.drop_table("camera_leases")
    op.drop_table("cluster_analyzers")
