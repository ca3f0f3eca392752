"""Index the chain's entries by time.

A camera claimed after a graceful handover looks up the incidents the handover closed among the
chain entries written since the release (:func:`safewatch.cluster.takeover.handed_over`), inside
the claim's transaction, which holds the chain lock every incident write of the cluster waits
for. Without an index on ``at`` that lookup read the whole chain, so each such claim stalled the
cluster's writes for longer as the chain grew.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_chain_entries_at", "chain_entries", ["at"])


def downgrade() -> None:
    op.drop_index("ix_chain_entries_at", table_name="chain_entries")
