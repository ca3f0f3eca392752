"""Remove expired evidence under the site's retention policy, and record each removal.

What may go: evidence files (stills, clips, sealed originals) of incidents whose episode has ended
and that an operator has closed (resolved or false positive). Evidence of open or acknowledged
incidents, of running episodes, and of incidents missing from the table (which ``safewatch verify``
reports as deleted: that evidence may be what proves it) is never touched.

In what order: first everything older than ``days`` (age from the incident's end), then, while the
evidence is over ``max_bytes``, the oldest remaining, one file at a time.

How: each removal is written to the tamper-evidence chain first (``evidence.removed``), then the
file is deleted, so the chain never lacks a removal that happened, and ``verify`` tells retention
from tampering. If the delete then fails, the file is left behind with its removal recorded; the
next run sees it in the store's listing and deletes it again. The inventory is the chain itself
(what was written and not yet removed), with sizes from the store's listing, so it works the same
for a folder and a bucket.

The chain does not know every file, though: a database adopted from before migrations has its
incidents chained (``incident.imported``) but not their stills and clips, and a store opened
without the chain writes none. Such files were never removed nor counted toward ``max_bytes``.
So the keys the incidents point at (``snapshot``, ``clip``) that have no chain entry join the
inventory, under the same rules (their incident ended and closed, aged from its end), and their
removal is recorded the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from safewatch.config.site import RetentionConfig
from safewatch.domain import IncidentStatus
from safewatch.errors import StorageError
from safewatch.storage import BlobStore, ChainEntryRow, EntryKind, IncidentRepository, IncidentRow

__all__ = ["Removal", "RetentionReport", "apply_retention"]

_log = logging.getLogger(__name__)

DAY = 86_400.0
CLOSED = frozenset({str(IncidentStatus.RESOLVED), str(IncidentStatus.FALSE_POSITIVE)})
"""Operator statuses whose evidence retention may remove."""


@dataclass(frozen=True, slots=True)
class Removal:
    """One evidence file removed (or, in a dry run, to be removed).

    Attributes:
        key: Evidence key.
        incident_id: Its incident.
        size: Bytes freed.
        rule: ``age`` (older than ``days``) or ``size`` (over ``max_bytes``).
        ended_at: When the incident ended (epoch seconds).
    """

    key: str
    incident_id: str
    size: int
    rule: Literal["age", "size"]
    ended_at: float


@dataclass
class RetentionReport:
    """What one retention run did.

    Attributes:
        removed: Files removed (planned, in a dry run), oldest first. A file whose delete
            failed is not among them (it is in ``failed``, and its bytes are kept).
        failed: Keys whose removal was recorded but whose delete (or delete again, for a file
            left over by an earlier run) failed; retried next run.
        swept: Keys removed earlier whose file was still there, deleted now (to be deleted, in
            a dry run).
        swept_bytes: Their bytes.
        total_bytes: Evidence bytes before the run, those swept included.
        kept_bytes: Evidence bytes after it.
        protected_bytes: Bytes held by open, acknowledged or running incidents (never removed).
        over_budget_bytes: How far ``kept_bytes`` is still above ``max_bytes`` (protected
            evidence can keep it there); 0 when within budget or without one.
        dry_run: Nothing was changed.
    """

    removed: list[Removal] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    swept_bytes: int = 0
    total_bytes: int = 0
    kept_bytes: int = 0
    protected_bytes: int = 0
    over_budget_bytes: int = 0
    dry_run: bool = False

    @property
    def freed_bytes(self) -> int:
        """Bytes removed (or to be removed), swept files included."""
        return sum(removal.size for removal in self.removed) + self.swept_bytes


@dataclass(frozen=True, slots=True)
class _Item:
    key: str
    incident_id: str | None
    status: str | None
    ended_at: float | None


def _inventory(repository: IncidentRepository) -> tuple[list[_Item], set[str]]:
    """Evidence the chain says exists (newest entry per key is a write), with its incident, and
    the keys whose newest entry is a removal; then the files incidents point at that the chain
    has no entry of (module docstring)."""
    kinds = (str(EntryKind.EVIDENCE_WRITTEN), str(EntryKind.EVIDENCE_REMOVED))
    newest = (
        select(ChainEntryRow.subject, func.max(ChainEntryRow.seq).label("seq"))
        .where(ChainEntryRow.kind.in_(kinds), ChainEntryRow.subject.is_not(None))
        .group_by(ChainEntryRow.subject)
        .subquery()
    )
    query = (
        select(ChainEntryRow, IncidentRow.status, IncidentRow.ended_at)
        .join(newest, ChainEntryRow.seq == newest.c.seq)
        .outerjoin(IncidentRow, IncidentRow.id == ChainEntryRow.incident_id)
    )
    items: list[_Item] = []
    removed: set[str] = set()
    try:
        with Session(repository.engine) as session:
            for entry, status, ended_at in session.execute(query):
                assert entry.subject is not None
                if entry.kind == EntryKind.EVIDENCE_REMOVED:
                    removed.add(entry.subject)
                    continue
                items.append(_Item(entry.subject, entry.incident_id, status, ended_at))
            chained = removed | {item.key for item in items}
            pointers = select(
                IncidentRow.id,
                IncidentRow.status,
                IncidentRow.ended_at,
                IncidentRow.snapshot,
                IncidentRow.clip,
            ).where((IncidentRow.snapshot.is_not(None)) | (IncidentRow.clip.is_not(None)))
            for incident_id, status, ended_at, *keys in session.execute(pointers):
                for key in keys:
                    if key is not None and key not in chained:
                        chained.add(key)
                        items.append(_Item(key, incident_id, status, ended_at))
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the evidence inventory: {getattr(exc, 'orig', None) or exc}"
        ) from exc
    return items, removed


def apply_retention(
    repository: IncidentRepository,
    store: BlobStore,
    policy: RetentionConfig,
    *,
    now: float | None = None,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> RetentionReport:
    """Remove the evidence the policy says has expired (see the module docstring).

    Args:
        repository: The site's incidents and chain.
        store: The site's evidence store.
        policy: ``days`` and ``max_bytes`` (either may be ``None``: no limit of that kind).
        now: The time to measure ages from; default: the clock.
        dry_run: Only report what would be removed.
        clock: Wall clock, when ``now`` is not given.

    Raises:
        StorageError: The chain or the store cannot be read, or a removal cannot be recorded.
    """
    now = clock() if now is None else now
    report = RetentionReport(dry_run=dry_run)
    items, removed_keys = _inventory(repository)
    listed = {info.key: info.size for info in store.list()}
    present = [item for item in items if item.key in listed]
    leftovers = sorted(removed_keys & listed.keys())
    # Files whose removal was recorded but whose delete failed are still on disk: counted, and
    # swept in a dry run too (it said nothing of files the real run then deleted).
    report.total_bytes = sum(listed[item.key] for item in present) + sum(
        listed[key] for key in leftovers
    )
    for key in leftovers:
        if not dry_run:
            try:
                store.delete(key)
            except StorageError as exc:
                _log.warning("retention: cannot delete %s again: %s", key, exc)
                report.failed.append(key)
                continue
        report.swept.append(key)
        report.swept_bytes += listed[key]

    def removable(item: _Item) -> bool:
        return item.status in CLOSED and item.ended_at is not None

    candidates = sorted(
        (item for item in present if removable(item)),
        key=lambda item: (item.ended_at or 0.0, item.key),
    )
    report.protected_bytes = sum(listed[i.key] for i in present if not removable(i))
    kept = sum(listed[item.key] for item in present)  # left-over files are not budgeted
    chosen: list[Removal] = []
    rest: list[_Item] = []
    for item in candidates:
        assert item.ended_at is not None and item.incident_id is not None
        if policy.days is not None and now - item.ended_at > policy.days * DAY:
            chosen.append(
                Removal(item.key, item.incident_id, listed[item.key], "age", item.ended_at)
            )
            kept -= listed[item.key]
        else:
            rest.append(item)
    if policy.max_bytes is not None:
        for item in rest:
            if kept <= policy.max_bytes:
                break
            assert item.ended_at is not None and item.incident_id is not None
            chosen.append(
                Removal(item.key, item.incident_id, listed[item.key], "size", item.ended_at)
            )
            kept -= listed[item.key]
    for removal in chosen:
        if not dry_run:
            repository.evidence_removed(
                removal.incident_id,
                removal.key,
                reason="retention",
                detail={"rule": removal.rule, "size": removal.size},
            )
            try:
                store.delete(removal.key)
            except StorageError as exc:
                # Still on disk: not removed, not freed (it was counted as both, and the
                # command exited 0), and still over max_bytes if it was.
                _log.warning(
                    "retention: %s recorded as removed, delete failed: %s", removal.key, exc
                )
                report.failed.append(removal.key)
                kept += removal.size
                continue
        report.removed.append(removal)
    report.kept_bytes = report.total_bytes - report.freed_bytes
    if policy.max_bytes is not None:
        report.over_budget_bytes = max(0, report.kept_bytes - int(policy.max_bytes))
    return report
