"""Tamper-evidence chain: ``chain_entries`` and its ``chain_head`` row.

Incidents that exist already (databases from before the chain) are chained as ``incident.imported``
entries, so ``safewatch verify`` vouches for them from now on instead of reporting each one as
unknown. Uses the stored hashing functions of :mod:`safewatch.storage.hash_chain` (a fixed format)
and Core queries with explicit columns, so later changes to the ORM models cannot break it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from safewatch.storage.hash_chain import (
    GENESIS,
    HEAD_ID,
    RECORD_FIELDS,
    EntryKind,
    canonical_json,
    entry_hash,
    record_digest,
)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    entries = op.create_table(
        "chain_entries",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(512), nullable=True),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_chain_entries_incident_id", "chain_entries", ["incident_id", "seq"])
    op.create_index("ix_chain_entries_subject", "chain_entries", ["subject", "seq"])
    head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    seq, prev = 0, GENESIS
    typed = {"track_ids": sa.JSON()}
    incidents = sa.table("incidents", *(sa.column(name, typed.get(name)) for name in RECORD_FIELDS))
    rows = op.get_bind().execute(
        sa.select(incidents).order_by(incidents.c.created_at, incidents.c.id)
    )
    now = time.time()
    detail = canonical_json({"reason": "existed before the tamper-evidence chain"})
    new_entries = []
    for row in rows.mappings():
        seq += 1
        digest = record_digest(row)
        fields = {
            "seq": seq,
            "at": now,
            "kind": str(EntryKind.IMPORTED),
            "incident_id": row["id"],
            "subject": None,
            "digest": digest,
            "detail": detail,
        }
        digest_hash = entry_hash(prev, **fields)
        new_entries.append({**fields, "prev_hash": prev, "hash": digest_hash})
        prev = digest_hash
    if new_entries:
        op.bulk_insert(entries, new_entries)
    op.bulk_insert(head, [{"id": HEAD_ID, "seq": seq, "hash": prev}])


def downgrade() -> None:
    op.drop_table("chain_head")
    op.drop_table("chain_entries")
