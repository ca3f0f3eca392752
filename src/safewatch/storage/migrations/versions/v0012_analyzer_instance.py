"""Cluster: each analyzer row names the process writing it and the site it was given.

``instance`` is a random token per process: a second live process started with the same analyzer
id is refused instead of stealing the first one's leases twice a second. ``site_digest`` is a hash
of the camera list (and the labels each camera requires) the analyzer was given: analyzers whose
site files differ warn instead of leaving a camera to an analyzer that does not know it.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cluster_analyzers", sa.Column("instance", sa.String(64), nullable=True))
    op.add_column("cluster_analyzers", sa.Column("site_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cluster_analyzers") as batch:
        batch.drop_column("site_digest")
        batch.drop_column("instance")
