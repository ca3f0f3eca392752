"""``verify_chain`` catches each kind of tampering, on SQLite and PostgreSQL, and names it:
edited or deleted stills, deleted, edited or inserted incidents, edited, deleted, reordered or
cut-off chain entries, and a chain rewritten whole (against a noted hash)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session

from incident_factories import make_incident
from safewatch.domain import Incident, IncidentStatus, incident_id
from safewatch.incidents import EvidenceStore
from safewatch.incidents import chain as chain_module
from safewatch.incidents.chain import ProblemKind, VerifyReport, verify_chain
from safewatch.storage import ChainEntryRow, IncidentRepository, IncidentRow
from safewatch.storage.hash_chain import GENESIS, entry_hash

T0 = 1_700_000_000.0


@dataclass
class Site:
    repo: IncidentRepository
    store: EvidenceStore
    root: Path
    incidents: list[Incident]

    @property
    def engine(self) -> Engine:
        return self.repo.engine

    def verify(self, expect_hash: str | None = None) -> VerifyReport:
        return verify_chain(self.engine, self.store.backend, expect_hash=expect_hash)


def still(value: int) -> np.ndarray:
    image = np.full((120, 160, 3), value, np.uint8)
    cv2.putText(image, "PPE", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 0, 255), 2)
    return image


@pytest.fixture
def site(db_engine: Engine, tmp_path: Path) -> Site:
    """Three incidents with stills, as the pipeline stores them, one acknowledged with a note."""
    repo = IncidentRepository(db_engine)
    store = EvidenceStore(tmp_path / "evidence", log=repo)
    incidents = []
    for n, camera in enumerate(["yard", "dock", "yard"]):
        started = T0 + 600 * n
        key = incident_id(camera, "hardhat", n, started)
        snapshot = store.write_still(key, still(60 + 40 * n), camera_id=camera, at=started)
        incident = make_incident(n, camera=camera, started_at=started, snapshot=snapshot)
        repo.upsert(incident)
        closed = dataclasses.replace(incident, ended_at=started + 8, peak_confidence=0.8)
        repo.upsert(closed)
        incidents.append(closed)
    repo.set_status(incidents[1].id, IncidentStatus.ACKNOWLEDGED, actor="ana")
    repo.add_note(incidents[1].id, "crew briefed", actor="ana")
    return Site(repo, store, tmp_path / "evidence", incidents)


def kinds(report: VerifyReport) -> list[ProblemKind]:
    return [p.kind for p in report.problems]


def test_untouched_site_verifies(site: Site) -> None:
    report = site.verify()
    assert report.ok, report.problems
    assert (report.entries, report.incidents, report.evidence_checked) == (11, 3, 3)
    assert report.head_seq == 11 and len(report.head_hash) == 64


def test_edited_still_is_named(site: Site) -> None:
    victim = site.incidents[2]
    assert victim.snapshot is not None
    path = site.root / victim.snapshot
    image = cv2.imread(str(path))
    image[40:80, 40:120] = 0  # black out the violator
    cv2.imwrite(str(path), image)
    report = site.verify()
    assert kinds(report) == [ProblemKind.EDITED_EVIDENCE]
    problem = report.problems[0]
    assert (problem.key, problem.incident_id) == (victim.snapshot, victim.id)
    assert victim.snapshot in problem.message and victim.id in problem.message


def test_deleted_still_is_named(site: Site) -> None:
    victim = site.incidents[0]
    assert victim.snapshot is not None
    (site.root / victim.snapshot).unlink()
    report = site.verify()
    assert kinds(report) == [ProblemKind.MISSING_EVIDENCE]
    assert report.problems[0].key == victim.snapshot
    assert "missing" in report.problems[0].message


def test_deleted_incident_is_named(site: Site) -> None:
    victim = site.incidents[1]
    with site.engine.begin() as connection:
        connection.execute(delete(IncidentRow).where(IncidentRow.id == victim.id))
    report = site.verify()
    assert kinds(report) == [ProblemKind.DELETED_INCIDENT]
    assert report.problems[0].incident_id == victim.id
    assert "camera dock, rule hardhat" in report.problems[0].message


def test_edited_incident_is_named(site: Site) -> None:
    victim = site.incidents[0]
    with site.engine.begin() as connection:
        connection.execute(
            update(IncidentRow).where(IncidentRow.id == victim.id).values(status="false_positive")
        )
    report = site.verify()
    assert kinds(report) == [ProblemKind.EDITED_INCIDENT]
    assert report.problems[0].incident_id == victim.id


def test_incident_inserted_outside_safewatch_is_named(site: Site) -> None:
    with site.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO incidents (id, camera_id, rule_id, rule_kind, severity, track_ids, "
                "started_at, peak_confidence, message, status, created_at, updated_at) VALUES "
                "('forged', 'yard', 'hardhat', 'ppe', 'high', '[9]', 1.0, 0.9, 'm', 'open', 1, 1)"
            )
        )
    report = site.verify()
    assert kinds(report) == [ProblemKind.UNCHAINED_INCIDENT]
    assert report.problems[0].incident_id == "forged"


def test_reordered_entries_are_named_by_sequence_number(site: Site) -> None:
    with site.engine.begin() as connection:
        for old, new in [(5, -1), (6, 5), (-1, 6)]:
            connection.execute(
                update(ChainEntryRow).where(ChainEntryRow.seq == old).values(seq=new)
            )
    report = site.verify()
    assert kinds(report) == [
        ProblemKind.EDITED_ENTRY,
        ProblemKind.EDITED_ENTRY,
        ProblemKind.REORDERED_ENTRIES,
    ]
    assert [p.seq for p in report.problems] == [5, 6, 7]
    assert "entry 7 follows entry 5, not entry 6" in report.problems[2].message


def test_edited_note_is_named(site: Site) -> None:
    with site.engine.begin() as connection:
        connection.execute(
            update(ChainEntryRow)
            .where(ChainEntryRow.kind == "incident.note")
            .values(detail='{"actor":"ana","text":"nothing happened"}')
        )
    report = site.verify()
    assert kinds(report) == [ProblemKind.EDITED_ENTRY]
    assert report.problems[0].seq == 11


def test_deleted_entries_are_named(site: Site) -> None:
    """Entries 3 and 4 are the first incident's close and the second one's still: with the close
    gone, the chain no longer vouches for the first incident's stored end either."""
    with site.engine.begin() as connection:
        connection.execute(delete(ChainEntryRow).where(ChainEntryRow.seq.in_([3, 4])))
    report = site.verify()
    assert kinds(report) == [ProblemKind.MISSING_ENTRIES, ProblemKind.EDITED_INCIDENT]
    assert "chain entries 3 to 4 are missing" in report.problems[0].message
    assert report.problems[1].incident_id == site.incidents[0].id


def test_entries_cut_off_the_end_are_named(site: Site) -> None:
    with site.engine.begin() as connection:
        connection.execute(delete(ChainEntryRow).where(ChainEntryRow.seq > 9))
    report = site.verify()
    # the acknowledgement (entry 10) is gone too, so the stored status is no longer vouched for
    assert kinds(report) == [ProblemKind.HEAD_MISMATCH, ProblemKind.EDITED_INCIDENT]
    assert "entries 10 to 11 were cut off" in report.problems[0].message


def test_chain_rewritten_whole_is_caught_by_a_noted_hash(site: Site) -> None:
    """An attacker who edits a record and recomputes every hash (and the head) is invisible to
    the walk; the head noted earlier no longer appears in the chain."""
    noted = site.verify().head_hash
    victim = site.incidents[0]
    with site.engine.begin() as connection:
        connection.execute(
            update(IncidentRow).where(IncidentRow.id == victim.id).values(status="resolved")
        )
    from safewatch.storage.hash_chain import record_digest

    with Session(site.engine) as session, session.begin():
        row = session.get(IncidentRow, victim.id)
        forged_digest = record_digest(row)
        prev = GENESIS
        for entry in session.scalars(select(ChainEntryRow).order_by(ChainEntryRow.seq)):
            if entry.incident_id == victim.id and entry.digest and entry.subject is None:
                entry.digest = forged_digest
            entry.prev_hash = prev
            entry.hash = entry_hash(
                prev,
                seq=entry.seq,
                at=entry.at,
                kind=entry.kind,
                incident_id=entry.incident_id,
                subject=entry.subject,
                digest=entry.digest,
                detail=entry.detail,
            )
            prev = entry.hash
        session.execute(text("UPDATE chain_head SET hash = :h"), {"h": prev})
    assert site.verify().ok
    report = site.verify(expect_hash=noted)
    assert kinds(report) == [ProblemKind.ANCHOR_NOT_FOUND]


def test_rewritten_still_is_chained_again(site: Site) -> None:
    """The manager replaces a still with a better frame: the newest write is what counts."""
    victim = site.incidents[0]
    site.store.write_still(victim.id, still(250), camera_id=victim.camera_id, at=victim.started_at)
    assert site.verify().ok


def test_a_witness_of_the_empty_chain_is_consistent(site: Site) -> None:
    """Older versions witnessed a fresh site's empty chain as entry 0 with the genesis hash; that
    entry is never stored, and the witness holds for any chain. A witness of a real entry still
    catches that entry's deletion."""
    from safewatch.incidents.witness import ChainWitness

    empty = ChainWitness(seq=0, hash=GENESIS, at=T0)
    assert verify_chain(site.engine, site.store.backend, witness=empty).ok
    forged = ChainWitness(seq=0, hash="ab" * 32, at=T0)
    report = verify_chain(site.engine, site.store.backend, witness=forged)
    assert kinds(report) == [ProblemKind.WITNESS_MISMATCH]
    with site.engine.connect() as connection:
        hash5 = connection.scalar(select(ChainEntryRow.hash).where(ChainEntryRow.seq == 5))
    assert hash5 is not None
    seen = ChainWitness(seq=5, hash=hash5, at=T0)
    assert verify_chain(site.engine, site.store.backend, witness=seen).ok
    with site.engine.begin() as connection:
        connection.execute(delete(ChainEntryRow).where(ChainEntryRow.seq == 5))
    report = verify_chain(site.engine, site.store.backend, witness=seen)
    assert ProblemKind.WITNESS_MISMATCH in kinds(report)
    assert "saw entry 5, which is no longer in the chain" in report.problems[-1].message


def _forge(site: Site, victim: Incident, edit: dict[str, object], *, removal: bool) -> None:
    """What someone with database write access can do: edit the row, delete its still, and
    append entries that vouch for it (a retention removal, an update with the new digest)."""
    from safewatch.storage import hash_chain

    assert victim.snapshot is not None
    with Session(site.engine) as session, session.begin():
        row = session.get(IncidentRow, victim.id)
        assert row is not None
        for name, value in edit.items():
            setattr(row, name, value)
        hash_chain.lock_head(session)
        if removal:
            row.snapshot = None
            hash_chain.append(
                session,
                at=T0 + 9000,
                kind="evidence.removed",
                incident_id=victim.id,
                subject=victim.snapshot,
                detail={"reason": "retention", "rule": "age", "size": 1},
            )
        hash_chain.append(
            session,
            at=T0 + 9000,
            kind="incident.updated",
            incident_id=victim.id,
            digest=hash_chain.record_digest(row),
            detail={"changed": ["snapshot"]},
        )
    if removal:
        site.store.backend.delete(victim.snapshot)


def test_a_retention_removal_appended_for_an_open_incident_is_forged(site: Site) -> None:
    """Every digest and link checks after such an append; retention never removes evidence of an
    incident no operator closed, so the removal gives it away."""
    victim = site.incidents[0]  # ended, never resolved
    _forge(site, victim, {"severity": "low"}, removal=True)
    report = site.verify()
    assert kinds(report) == [ProblemKind.FORGED_REMOVAL]
    assert report.problems[0].key == victim.snapshot
    assert "status open" in report.problems[0].message


def test_a_retention_removal_of_a_resolved_incident_verifies(site: Site) -> None:
    from safewatch.config.site import RetentionConfig
    from safewatch.incidents.retention import apply_retention

    victim = site.incidents[2]
    site.repo.set_status(victim.id, IncidentStatus.RESOLVED, actor="ana")
    report = apply_retention(site.repo, site.store.backend, RetentionConfig(days=1), now=T0 + 1e6)
    assert [r.key for r in report.removed] == [victim.snapshot]
    assert site.verify().ok, site.verify().problems


def test_an_edited_start_with_a_fresh_digest_appended_is_named(site: Site) -> None:
    """The camera, rule and start never change after an incident opens: an edit that appended a
    new digest for itself still differs from the incident.opened entry."""
    victim = site.incidents[1]
    _forge(site, victim, {"started_at": victim.started_at + 3600}, removal=False)
    report = site.verify()
    assert kinds(report) == [ProblemKind.EDITED_INCIDENT]
    assert "camera, rule or start" in report.problems[0].message


def test_evidence_the_chain_never_recorded_is_named_whatever_its_length(site: Site) -> None:
    """Only an empty chain's store was looked at: a still put among the evidence of a site with
    entries verified as ok without a word. It is named now, as a notice: a crash between writing
    and chaining leaves such a file, so it must not fail the check. Temporary files (hidden,
    renamed into place) are no evidence."""
    forged = "yard/2023-11-14/forged.jpg"
    site.store.backend.put_bytes(forged, b"not recorded")
    (site.root / "yard" / "2023-11-14" / ".clip.mp4.part").write_bytes(b"being written")
    report = site.verify()
    assert report.ok, report.problems
    assert [n.kind for n in report.notices] == [ProblemKind.UNCHAINED_EVIDENCE]
    assert report.notices[0].key == forged and forged in report.notices[0].message


def test_a_file_chained_while_verify_runs_is_not_named(site: Site) -> None:
    """A running server stores a file, then commits its entry: listed in between, the file was
    not in the walk, and only the later look-up finds its entry."""
    victim = site.incidents[0]
    key = site.store.key_for(victim.id, camera_id=victim.camera_id, at=T0, suffix=".mp4")
    info = site.store.backend.put_bytes(key, b"a clip")
    assert info.sha256 is not None

    def commit_now(_key: str) -> None:  # called as each recorded file is hashed, after the walk
        if site.repo.timeline(victim.id)[-1].subject != key:
            site.repo.evidence_written(
                victim.id, key, str(info.sha256), info.size, camera_id=victim.camera_id
            )

    report = verify_chain(site.engine, site.store.backend, progress=commit_now)
    assert report.ok, report.problems


def test_a_still_replaced_while_verify_runs_is_not_named(site: Site) -> None:
    """The recorder replaces a still at the same key when a clearer frame arrives: the walk's
    digest is then older than the file, and the new digest's entry came after the walk. It was
    reported as edited evidence; the chain is read again before."""
    victim = site.incidents[0]
    replaced: list[str] = []

    def replace_now(key: str) -> None:  # called before each recorded file is hashed
        if key == victim.snapshot and not replaced:
            replaced.append(site.store.write_still(victim.id, still(200), camera_id="yard", at=T0))

    report = verify_chain(site.engine, site.store.backend, progress=replace_now)
    assert replaced == [victim.snapshot]
    assert report.ok, report.problems
    assert report.evidence_checked == 3


def test_a_still_hashed_between_its_rename_and_its_entry_is_looked_at_again(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server renames a replacement still into place, then chains its digest: verify hashing
    the file in between found no entry for it and reported edited evidence. It waits once
    (SETTLE_SECONDS) and looks again; the server's entry lands in that wait here."""
    victim = site.incidents[0]
    key = victim.snapshot
    assert key is not None
    renamed = site.store.backend.put_bytes  # the file is in place, its entry not yet written
    waits: list[float] = []

    def rename_now(hashed: str) -> None:
        if hashed == key and not waits:
            renamed(key, b"a clearer still")

    def server_commits(seconds: float) -> None:
        waits.append(seconds)
        digest = site.store.backend.sha256(key)
        site.repo.evidence_written(victim.id, key, digest, 15, camera_id="yard")

    monkeypatch.setattr(chain_module.time, "sleep", server_commits)
    report = verify_chain(site.engine, site.store.backend, progress=rename_now)
    assert waits == [chain_module.SETTLE_SECONDS]
    assert report.ok, report.problems

    renamed(key, b"edited by hand")  # no entry follows: still named after the wait
    monkeypatch.setattr(chain_module.time, "sleep", waits.append)
    report = verify_chain(site.engine, site.store.backend)
    assert kinds(report) == [ProblemKind.EDITED_EVIDENCE] and len(waits) == 2


def test_a_file_removed_by_retention_while_verify_runs_is_not_named(site: Site) -> None:
    """Retention chains a removal, then deletes the file: one deleted while verify hashes the
    files was reported missing, though the chain says why it is gone."""
    victim = site.incidents[2]
    assert victim.snapshot is not None
    site.repo.set_status(victim.id, IncidentStatus.RESOLVED, actor="ana")

    def remove_now(key: str) -> None:
        if key == victim.snapshot:
            site.repo.evidence_removed(
                victim.id, key, reason="retention", detail={"rule": "age", "size": 1}
            )
            site.store.backend.delete(key)

    report = verify_chain(site.engine, site.store.backend, progress=remove_now)
    assert report.ok, report.problems
    assert not (site.root / victim.snapshot).exists()
