"""Rule drafts awaiting confirmation, in the database rather than one API process's memory.

A draft made on one API node could not be confirmed on another ("no such draft") and a restart
lost every draft in flight (:mod:`safewatch.storage.draft_tables`).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_drafts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_index("ix_rule_drafts_created_at", "rule_drafts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_rule_drafts_created_at", table_name="rule_drafts")
    op.drop_table("rule_drafts")
