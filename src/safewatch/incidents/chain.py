"""Verify the tamper-evidence chain against the incidents table and the evidence files.

``safewatch verify`` walks every chain entry once, in order, recomputing each hash and link, and
remembers the newest digest chained for each incident and each evidence file. Then it compares:

* each incident row with the digest last chained for it (an edited record), and its camera, rule
  and start with those its ``incident.opened`` entry recorded (they never change afterwards);
* each retention removal of evidence with the incident's chained history: retention removes only
  evidence of incidents that had ended and that an operator had closed (a forged removal);
* each incident the chain knows with the table (a deleted incident), and the other way round
  (an incident inserted outside safewatch);
* each evidence file not removed by retention with its chained SHA-256 (an edited still or clip)
  and its existence (a deleted one); a file that differs or is gone is looked up in the chain
  again first, so a still a running server replaced, or a file retention removed, while verify
  ran is not reported (their entries were committed after the walk);
* the evidence store's files with the chain: with an empty chain, evidence with nothing in the
  database to vouch for it means the database was wiped or replaced (or the site file names
  another one); with entries, each evidence file that no entry records and no incident names is
  a *notice*, not a problem (it was put there outside safewatch, or left by a crash between
  writing it and chaining it: it proves nothing either way, and no incident can use it). The store
  is listed before the walk and a file still unknown after it is looked up again, so the file of a
  running server, stored just before its entry is committed, is not reported; temporary files
  (hidden, renamed into place when complete) are not listed; an incident's still or clip from
  before the chain (``incident.imported``) is named by its row, and not reported;
* the latest witness of the head kept outside the database
  (:mod:`safewatch.incidents.witness`) with the entry it names (newest entries cut off, or the
  chain rewritten since).

Every problem names what it is about: the sequence numbers of broken entries, the incident id,
the evidence key. Memory is one small record per incident and evidence file, plus the hashes of
the last :data:`REORDER_WINDOW` entries (to tell a reordering from a replaced entry).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from safewatch.errors import NotFound, StorageError
from safewatch.incidents.evidence import is_evidence_key
from safewatch.incidents.retention import CLOSED
from safewatch.incidents.witness import ChainWitness
from safewatch.storage import BlobStore, ChainEntryRow, EntryKind, IncidentRow
from safewatch.storage.hash_chain import (
    GENESIS,
    RECORD_KINDS,
    entry_hash,
    iter_entries,
    read_head,
    record_digest,
)

__all__ = ["REORDER_WINDOW", "Problem", "ProblemKind", "VerifyReport", "verify_chain"]

REORDER_WINDOW = 100_000
"""How far back an entry's link is looked up to name a reordering (instead of a replaced entry)."""


class ProblemKind(StrEnum):
    """What kind of tampering (or damage) a problem shows."""

    EDITED_ENTRY = "edited_entry"
    REORDERED_ENTRIES = "reordered_entries"
    BROKEN_LINK = "broken_link"
    MISSING_ENTRIES = "missing_entries"
    HEAD_MISMATCH = "head_mismatch"
    ANCHOR_NOT_FOUND = "anchor_not_found"
    WITNESS_MISMATCH = "witness_mismatch"
    EDITED_INCIDENT = "edited_incident"
    DELETED_INCIDENT = "deleted_incident"
    UNCHAINED_INCIDENT = "unchained_incident"
    EDITED_EVIDENCE = "edited_evidence"
    MISSING_EVIDENCE = "missing_evidence"
    FORGED_REMOVAL = "forged_removal"
    UNCHAINED_EVIDENCE = "unchained_evidence"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that does not match the chain.

    Attributes:
        kind: What it is.
        message: One sentence for the operator, naming what and where.
        seq: The chain entry concerned, if one.
        incident_id: The incident concerned, if one.
        key: The evidence file concerned, if one.
    """

    kind: ProblemKind
    message: str
    seq: int | None = None
    incident_id: str | None = None
    key: str | None = None


@dataclass
class VerifyReport:
    """What :func:`verify_chain` checked and found."""

    entries: int = 0
    incidents: int = 0
    evidence_checked: int = 0
    evidence_removed: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)
    """Findings that prove nothing either way and do not make the report fail: an evidence file
    no entry records next to a chain with entries (a crash between writing a file and chaining
    it leaves one, so a kill -9 would otherwise fail every later verify)."""

    @property
    def ok(self) -> bool:
        """No problem found (notices do not count)."""
        return not self.problems


@dataclass(slots=True)
class _Evidence:
    incident_id: str | None
    digest: str | None
    size: int | None
    seq: int
    removed: bool


@dataclass(slots=True)
class _Life:
    """What the chain says of an incident so far (the walk is in ``seq`` order)."""

    opened: dict[str, object] | None
    """The ``incident.opened`` detail; ``None`` for one imported when the chain was added, whose
    entry records nothing of it (so neither check below can be made)."""
    opened_seq: int
    ended: bool = False
    status: str | None = None


@dataclass(slots=True)
class _Walk:
    """State of the walk over the chain."""

    report: VerifyReport
    records: dict[str, tuple[str, int]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    lives: dict[str, _Life] = field(default_factory=dict)
    evidence: dict[str, _Evidence] = field(default_factory=dict)
    seq_of_hash: OrderedDict[str, int] = field(default_factory=OrderedDict)
    expect_hash: str | None = None
    anchor_found: bool = False
    witnesses: tuple[tuple[ChainWitness, str], ...] = ()
    witnessed: dict[int, str] = field(default_factory=dict)
    """Hash of each entry a witness names, as found in the chain."""
    prev_hash: str = GENESIS
    prev_seq: int = 0
    named: set[str] = field(default_factory=set)
    """The evidence keys the incident rows name (still, clip)."""


def _problem(walk: _Walk, problem: Problem) -> None:
    walk.report.problems.append(problem)


def _check_links(engine: Engine, walk: _Walk) -> None:
    for row, entry in iter_entries(engine):
        walk.report.entries += 1
        expected = walk.prev_seq + 1
        if row.seq != expected:
            span = f"{expected}" if row.seq == expected + 1 else f"{expected} to {row.seq - 1}"
            _problem(
                walk,
                Problem(
                    ProblemKind.MISSING_ENTRIES,
                    f"chain entries {span} are missing (deleted)",
                    seq=expected,
                ),
            )
        recomputed = entry_hash(
            row.prev_hash,
            seq=row.seq,
            at=row.at,
            kind=row.kind,
            incident_id=row.incident_id,
            subject=row.subject,
            digest=row.digest,
            detail=row.detail,
        )
        about = f"{row.kind}" + (f" of incident {row.incident_id}" if row.incident_id else "")
        if recomputed != row.hash:
            _problem(
                walk,
                Problem(
                    ProblemKind.EDITED_ENTRY,
                    f"chain entry {row.seq} ({about}) was altered or moved: its content does not "
                    "match its hash",
                    seq=row.seq,
                    incident_id=row.incident_id,
                ),
            )
        elif row.prev_hash != walk.prev_hash and row.seq == expected:
            before = walk.seq_of_hash.get(row.prev_hash)
            if before is not None:
                _problem(
                    walk,
                    Problem(
                        ProblemKind.REORDERED_ENTRIES,
                        f"chain entry {row.seq} follows entry {before}, not entry "
                        f"{row.seq - 1}: entries were reordered",
                        seq=row.seq,
                    ),
                )
            else:
                _problem(
                    walk,
                    Problem(
                        ProblemKind.BROKEN_LINK,
                        f"chain entry {row.seq} does not follow entry {row.seq - 1}: the entry "
                        "before it was replaced",
                        seq=row.seq,
                    ),
                )
        walk.seq_of_hash[row.hash] = row.seq
        if len(walk.seq_of_hash) > REORDER_WINDOW:
            walk.seq_of_hash.popitem(last=False)
        if row.hash == walk.expect_hash:
            walk.anchor_found = True
        if any(row.seq == witness.seq for witness, _ in walk.witnesses):
            walk.witnessed[row.seq] = row.hash
        walk.prev_hash = row.hash
        walk.prev_seq = row.seq
        _remember(walk, entry.kind, row.seq, entry.incident_id, entry.subject, entry.digest,
                  entry.detail)  # fmt: skip


def _remember(
    walk: _Walk,
    kind: str,
    seq: int,
    incident_id: str | None,
    subject: str | None,
    digest: str | None,
    detail: dict[str, object],
) -> None:
    if kind in RECORD_KINDS and incident_id is not None and digest is not None:
        walk.records[incident_id] = (digest, seq)
        life = walk.lives.get(incident_id)
        if kind == EntryKind.INCIDENT_OPENED:
            walk.labels[incident_id] = (
                f"camera {detail.get('camera_id')}, rule {detail.get('rule_id')}"
            )
            if life is None:
                walk.lives[incident_id] = _Life(dict(detail), seq)
        elif kind == EntryKind.IMPORTED and life is None:
            walk.lives[incident_id] = _Life(None, seq)
        elif life is not None and kind == EntryKind.INCIDENT_CLOSED:
            life.ended = True
        elif life is not None and kind == EntryKind.STATUS_CHANGED:
            life.status = str(detail.get("to"))
    elif kind == EntryKind.EVIDENCE_WRITTEN and subject is not None:
        size = detail.get("size")
        walk.evidence[subject] = _Evidence(
            incident_id, digest, size if isinstance(size, int) else None, seq, removed=False
        )
    elif kind == EntryKind.EVIDENCE_REMOVED and subject is not None:
        walk.evidence[subject] = _Evidence(incident_id, None, None, seq, removed=True)
        if detail.get("reason") == "retention" and incident_id is not None:
            _check_retention(walk, seq, incident_id, subject)


def _check_retention(walk: _Walk, seq: int, incident_id: str, key: str) -> None:
    """A retention removal must follow what retention requires of the incident: ended, and
    closed by an operator (:data:`~safewatch.incidents.retention.CLOSED`). Someone who can write
    the database could otherwise delete a still or clip, edit the incident and append a removal
    and an update, and every digest and link would check."""
    life = walk.lives.get(incident_id)
    if life is not None and life.opened is None:
        return  # imported: its history before the chain is unknown
    if life is not None and life.ended and life.status in CLOSED:
        return
    state = (
        "it is not in the chain"
        if life is None
        else f"it had {'' if life.ended else 'not ended and '}status {life.status or 'open'}"
    )
    _problem(
        walk,
        Problem(
            ProblemKind.FORGED_REMOVAL,
            f"chain entry {seq} records evidence file {key} of incident {incident_id} as removed "
            f"by retention, but {state} then (retention removes only evidence of ended, "
            "resolved or false-positive incidents): the entry was forged",
            seq=seq,
            incident_id=incident_id,
            key=key,
        ),
    )


def _check_head(engine: Engine, walk: _Walk) -> None:
    report = walk.report
    report.head_seq, report.head_hash = walk.prev_seq, walk.prev_hash
    head = read_head(engine)
    if head is None:
        _problem(walk, Problem(ProblemKind.HEAD_MISMATCH, "the chain head row is missing"))
    elif head != (walk.prev_seq, walk.prev_hash):
        seq, _ = head
        if seq > walk.prev_seq:
            message = (
                f"the chain ends at entry {walk.prev_seq} but its head says {seq}: entries "
                f"{walk.prev_seq + 1} to {seq} were cut off the end"
            )
        else:
            message = (
                f"the chain head (entry {seq}) does not match the newest entry "
                f"({walk.prev_seq}): the head row was edited"
            )
        _problem(walk, Problem(ProblemKind.HEAD_MISMATCH, message, seq=seq))
    expect_hash = walk.expect_hash
    if expect_hash is not None and not walk.anchor_found:
        _problem(
            walk,
            Problem(
                ProblemKind.ANCHOR_NOT_FOUND,
                f"no chain entry has the hash {expect_hash} noted earlier: the chain was "
                "rewritten since",
            ),
        )


def _check_witnesses(walk: _Walk) -> None:
    for witness, where in walk.witnesses:
        _check_witness(walk, witness, where)


def _check_witness(walk: _Walk, witness: ChainWitness, where: str) -> None:
    # Entry 0 is the empty chain, whose hash is GENESIS by definition (entry 1 links to it); it
    # is never stored, so a witness of a fresh site (written by older versions at the first
    # start) is consistent with any chain.
    found = GENESIS if witness.seq == 0 else walk.witnessed.get(witness.seq)
    if found == witness.hash:
        return
    seen = f"the chain witness of {witness.when} in {where} saw entry {witness.seq}"
    if found is None and walk.prev_seq < witness.seq:
        message = (
            f"{seen}, but the chain ends at entry {walk.prev_seq}: entries "
            f"{walk.prev_seq + 1} to {witness.seq} were cut off the end"
        )
    elif found is None:
        message = f"{seen}, which is no longer in the chain: entries were deleted"
    else:
        message = (
            f"{seen} with hash {witness.hash[:16]}..., the chain now has "
            f"{found[:16]}...: the chain was rewritten since"
        )
    _problem(walk, Problem(ProblemKind.WITNESS_MISMATCH, message, seq=witness.seq))


def _moved(row: IncidentRow, life: _Life | None) -> bool:
    """Whether the row's camera, rule or start differ from its ``incident.opened`` entry: they
    are set when an incident opens and never change, so an edit that appended a fresh
    ``incident.updated`` digest for itself still shows here."""
    opened = life.opened if life is not None else None
    if opened is None:
        return False
    try:
        started = float(opened["started_at"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return True
    return (
        row.camera_id != opened.get("camera_id")
        or row.rule_id != opened.get("rule_id")
        or float(row.started_at) != started
    )


def _check_incidents(engine: Engine, walk: _Walk) -> None:
    seen: set[str] = set()
    query = select(IncidentRow).order_by(IncidentRow.id)
    try:
        with Session(engine) as session:
            for row in session.scalars(query.execution_options(yield_per=1000)):
                seen.add(row.id)
                walk.named.update(k for k in (row.snapshot, row.clip) if k is not None)
                walk.report.incidents += 1
                chained = walk.records.get(row.id)
                if chained is None:
                    _problem(
                        walk,
                        Problem(
                            ProblemKind.UNCHAINED_INCIDENT,
                            f"incident {row.id} is not in the chain: it was inserted outside "
                            "safewatch",
                            incident_id=row.id,
                        ),
                    )
                elif _moved(row, walk.lives.get(row.id)):
                    _problem(
                        walk,
                        Problem(
                            ProblemKind.EDITED_INCIDENT,
                            f"incident {row.id} was edited: its camera, rule or start differs "
                            f"from what chain entry {walk.lives[row.id].opened_seq} "
                            "(incident.opened) recorded, and they never change",
                            seq=walk.lives[row.id].opened_seq,
                            incident_id=row.id,
                        ),
                    )
                elif record_digest(row) != chained[0]:
                    _problem(
                        walk,
                        Problem(
                            ProblemKind.EDITED_INCIDENT,
                            f"incident {row.id} was edited: the record differs from what chain "
                            f"entry {chained[1]} vouches for",
                            seq=chained[1],
                            incident_id=row.id,
                        ),
                    )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read incidents: {getattr(exc, 'orig', None) or exc}") from exc
    for incident_id, (_, seq) in walk.records.items():
        if incident_id not in seen:
            label = walk.labels.get(incident_id)
            _problem(
                walk,
                Problem(
                    ProblemKind.DELETED_INCIDENT,
                    f"incident {incident_id}"
                    + (f" ({label})" if label else "")
                    + f" was deleted: chain entry {seq} vouches for it, the table has no such row",
                    seq=seq,
                    incident_id=incident_id,
                ),
            )


def _chained_after(engine: Engine, key: str, seq: int) -> _Evidence | None:
    """The newest evidence entry (written or removed) of ``key`` after entry ``seq``, if any.

    A running server replaces a still at the same key (a clearer frame) and retention removes
    files while verify hashes them: the walk's digest is then older than the file, and the entry
    that vouches for the change (the new digest; the removal, chained before the file goes) was
    committed after the walk. Looked up again before a file is reported edited or missing, as
    :func:`_chained_since` does for files the walk did not know.
    """
    query = (
        select(ChainEntryRow)
        .where(
            ChainEntryRow.subject == key,
            ChainEntryRow.seq > seq,
            ChainEntryRow.kind.in_(
                (str(EntryKind.EVIDENCE_WRITTEN), str(EntryKind.EVIDENCE_REMOVED))
            ),
        )
        .order_by(ChainEntryRow.seq.desc())
        .limit(1)
    )
    try:
        with Session(engine) as session:
            row = session.scalars(query).first()
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the tamper-evidence chain: {getattr(exc, 'orig', None) or exc}"
        ) from exc
    if row is None:
        return None
    removed = row.kind == EntryKind.EVIDENCE_REMOVED
    return _Evidence(row.incident_id, None if removed else row.digest, None, row.seq, removed)


SETTLE_SECONDS = 1.0
"""How long verify waits before it looks again at the files that differ from the chain.

A running server renames a replacement still into place, then commits its digest: a file hashed
in between differs from every entry, and the entry that vouches for it is a few milliseconds
away. Each file that still differs after this wait (once per run, not per file) is reported."""


def _differs(
    engine: Engine, store: BlobStore, key: str, state: _Evidence
) -> tuple[ProblemKind, str | None] | None:
    """Whether ``key`` differs from what the chain says of it now: missing (``None`` digest) or
    edited (its digest); ``None`` when it matches the walk's entry or a later one."""
    try:
        actual: str | None = store.sha256(key)
    except NotFound:
        actual = None
    if actual == state.digest:
        return None
    later = _chained_after(engine, key, state.seq)
    if later is not None and (later.removed or later.digest == actual):
        return None  # replaced or removed by retention while verify ran, and chained
    return (ProblemKind.EDITED_EVIDENCE if actual else ProblemKind.MISSING_EVIDENCE), actual


def _check_evidence(
    engine: Engine,
    store: BlobStore,
    walk: _Walk,
    progress: Callable[[str], None] | None,
    settle: float,
) -> None:
    suspects: list[tuple[str, _Evidence]] = []
    for key, state in sorted(walk.evidence.items()):
        if state.removed:
            walk.report.evidence_removed += 1
            continue
        walk.report.evidence_checked += 1
        if progress is not None:
            progress(key)
        if _differs(engine, store, key, state) is not None:
            suspects.append((key, state))
    if suspects and settle > 0:
        time.sleep(settle)  # the rename-then-chain window of a running server (SETTLE_SECONDS)
    for key, state in suspects:
        found = _differs(engine, store, key, state)
        if found is None:
            continue
        kind, actual = found
        of = f" of incident {state.incident_id}" if state.incident_id else ""
        if kind is ProblemKind.MISSING_EVIDENCE:
            message = (
                f"evidence file {key}{of} is missing: chain entry {state.seq} recorded it "
                "and no retention removal followed"
            )
        else:
            message = (
                f"evidence file {key}{of} was changed: its SHA-256 is {str(actual)[:16]}..., "
                f"chain entry {state.seq} recorded {str(state.digest)[:16]}..."
            )
        _problem(
            walk,
            Problem(kind, message, seq=state.seq, incident_id=state.incident_id, key=key),
        )


def _evidence_keys(store: BlobStore) -> list[str]:
    """The evidence files in the store (not its other objects, nor temporary files)."""
    return [info.key for info in store.list() if is_evidence_key(info.key)]


def _chained_since(engine: Engine, keys: list[str]) -> set[str]:
    """Which of ``keys`` the chain records as written now (entries committed after the walk)."""
    found: set[str] = set()
    try:
        with Session(engine) as session:
            for start in range(0, len(keys), 500):
                query = select(ChainEntryRow.subject).where(
                    ChainEntryRow.kind == EntryKind.EVIDENCE_WRITTEN,
                    ChainEntryRow.subject.in_(keys[start : start + 500]),
                )
                found.update(s for s in session.scalars(query) if s is not None)
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot read the tamper-evidence chain: {getattr(exc, 'orig', None) or exc}"
        ) from exc
    return found


def _check_unvouched(engine: Engine, store: BlobStore, walk: _Walk, keys: list[str]) -> None:
    """Evidence files in the store (``keys``, listed before the walk) that nothing vouches for
    (module docstring). Without this a database wiped whole (its entries, head and incidents)
    next to the evidence it had recorded verified as ok, and so did a file put among the
    evidence of a site with entries (only an empty chain's store was looked at)."""
    if walk.report.entries:
        unknown = [k for k in keys if k not in walk.evidence and k not in walk.named]
        # A running server stores a file, then commits its entry: one listed in between is
        # recorded by now (or was deleted, when the entry failed).
        recorded = _chained_since(engine, unknown) if unknown else set()
        for key in unknown:
            if key in recorded or store.stat(key) is None:
                continue
            # A notice, not a problem: no incident names the file, so it cannot pass for any
            # incident's evidence, and a crash between writing and chaining leaves one.
            walk.report.notices.append(
                Problem(
                    ProblemKind.UNCHAINED_EVIDENCE,
                    f"evidence file {key} is in no chain entry and no incident names it: it was "
                    "put there outside safewatch, or left by a crash between writing and "
                    "chaining it",
                    key=key,
                )
            )
        return
    if keys:
        _problem(
            walk,
            Problem(
                ProblemKind.UNCHAINED_EVIDENCE,
                f"the chain is empty, but the evidence store holds {len(keys)} evidence file(s) "
                f"(first: {keys[0]}): the database was wiped or replaced, or the site file names "
                "another database than the one that recorded them",
                key=keys[0],
            ),
        )


def verify_chain(
    engine: Engine,
    evidence: BlobStore | None,
    *,
    expect_hash: str | None = None,
    witness: ChainWitness | None = None,
    witness_location: str = "the evidence store",
    more_witnesses: Sequence[tuple[ChainWitness, str]] = (),
    progress: Callable[[str], None] | None = None,
    settle: float = SETTLE_SECONDS,
) -> VerifyReport:
    """Check the chain, the incidents and the evidence against each other.

    Args:
        engine: The site's database.
        evidence: The site's evidence store; ``None`` skips the files (chain and table only).
        expect_hash: A chain hash noted earlier (e.g. printed by a previous verify and kept
            elsewhere); it must still be in the chain, which catches a chain rewritten whole.
        witness: The latest head witnessed outside the database; the chain must still hold
            that entry with that hash, which catches the newest entries cut off with the head
            row set back.
        witness_location: Where the witness was read, for the message.
        more_witnesses: Further witnesses with where each came from (e.g. a witness alert
            a mail or webhook receiver kept, outside anything the server can write); each
            is checked like ``witness``.
        progress: Called with each evidence key before it is hashed.
        settle: Seconds to wait before the files that differ from the chain are looked at
            again (:data:`SETTLE_SECONDS`).

    Returns:
        What was checked and every problem found (none: ``report.ok``).

    Raises:
        StorageError: The database or the evidence store cannot be read at all.
    """
    witnesses = ((witness, witness_location),) if witness is not None else ()
    walk = _Walk(VerifyReport(), expect_hash=expect_hash, witnesses=(*witnesses, *more_witnesses))
    # Listed first: a file then was stored before the walk, and its entry is read by it.
    on_disk = _evidence_keys(evidence) if evidence is not None else []
    _check_links(engine, walk)
    _check_head(engine, walk)
    _check_witnesses(walk)
    _check_incidents(engine, walk)
    if evidence is not None:
        _check_evidence(engine, evidence, walk, progress, settle)
        _check_unvouched(engine, evidence, walk, on_disk)
    return walk.report
