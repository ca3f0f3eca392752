"""Cluster: each analyzer advertises where other nodes reach its live video.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cluster_analyzers", sa.Column("video_url", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cluster_analyzers") as batch:
        batch.drop_column("video_url")
