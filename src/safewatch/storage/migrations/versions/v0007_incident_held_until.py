"""Open incidents remember the last frame time they were known to hold (``held_until``).

A process that dies mid-incident cannot close it; the next start closes it at this time instead of
leaving it open forever or inventing an end. Bookkeeping, like ``updated_at``: not in the chain's
record digest (the closing entry records the end it leads to).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incidents", sa.Column("held_until", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("held_until")
