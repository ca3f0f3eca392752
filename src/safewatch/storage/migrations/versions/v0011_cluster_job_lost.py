"""Cluster: count the times a job's analyzer was lost while running it.

A job whose claimer stopped heartbeating is claimed again; a video that crashes its decoder
would otherwise take down every analyzer in turn. ``lost`` counts those expiries (a release by
a stopping analyzer does not count); at three the job is marked failed instead.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "cluster_jobs", sa.Column("lost", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("cluster_jobs") as batch:
        batch.drop_column("lost")
