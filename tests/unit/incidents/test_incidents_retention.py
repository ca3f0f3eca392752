"""Retention on SQLite and PostgreSQL (and once on S3): what goes, in what order, what never
goes, and that every removal is chained so ``verify`` still passes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete

from db_servers import MotoS3
from safewatch.config.site import RetentionConfig
from safewatch.domain import Incident, IncidentStatus, Severity, incident_id
from safewatch.errors import StorageError
from safewatch.incidents import EvidenceStore
from safewatch.incidents.chain import ProblemKind, verify_chain
from safewatch.incidents.retention import apply_retention
from safewatch.storage import BlobStore, IncidentRepository, IncidentRow, LocalBlobStore
from safewatch.storage.s3_blobs import S3BlobStore

DAY = 86_400.0
NOW = 1_700_000_000.0 + 100 * DAY


@dataclass
class Site:
    repo: IncidentRepository
    store: EvidenceStore

    def add(
        self,
        name: str,
        *,
        days_ago: float,
        status: IncidentStatus = IncidentStatus.RESOLVED,
        size: int = 1000,
        ended: bool = True,
        clip: bool = False,
        chained: bool = True,
    ) -> Incident:
        """``chained=False``: its files have no ``evidence.written`` entry, as those of a
        database adopted from before migrations (or written by a store without the chain)."""
        started = NOW - days_ago * DAY
        key = incident_id("yard", name, 1, started)

        def write(data: bytes, suffix: str) -> str:
            if chained:
                return self.store.write_bytes(
                    key, data, camera_id="yard", at=started, suffix=suffix
                )
            blob = self.store.key_for(key, camera_id="yard", at=started, suffix=suffix)
            self.store.backend.put_bytes(blob, data)
            return blob

        snapshot = write(b"s" * size, ".jpg")
        clip_key = write(b"c" * size, ".mp4") if clip else None
        incident = Incident(
            id=key,
            camera_id="yard",
            rule_id=name,
            rule_kind="ppe",
            severity=Severity.HIGH,
            track_ids=(1,),
            started_at=started,
            ended_at=started + 10 if ended else None,
            peak_confidence=0.7,
            message=name,
            snapshot=snapshot,
            clip=clip_key,
        )
        self.repo.upsert(incident)
        if status is not IncidentStatus.OPEN:
            self.repo.set_status(key, IncidentStatus.ACKNOWLEDGED)
        if status not in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED):
            self.repo.set_status(key, status)
        return incident

    def keys(self) -> list[str]:
        return [info.key for info in self.store.backend.list()]

    def policy(self, days: float | None = None, max_bytes: int | None = None) -> RetentionConfig:
        return RetentionConfig(days=days, max_bytes=max_bytes)  # type: ignore[arg-type]

    def run(self, policy: RetentionConfig, **kwargs: object):  # type: ignore[no-untyped-def]
        return apply_retention(self.repo, self.store.backend, policy, now=NOW, **kwargs)  # type: ignore[arg-type]


def make_site(engine: Engine, backend: BlobStore) -> Site:
    repo = IncidentRepository(engine)
    return Site(repo, EvidenceStore(backend, log=repo))


@pytest.fixture
def site(db_engine: Engine, tmp_path: Path) -> Site:
    return make_site(db_engine, LocalBlobStore(tmp_path / "evidence"))


def test_expired_evidence_of_closed_incidents_goes_and_is_chained(site: Site) -> None:
    old = site.add("old-resolved", days_ago=40, clip=True)
    false = site.add("old-false", days_ago=35, status=IncidentStatus.FALSE_POSITIVE)
    recent = site.add("recent", days_ago=5)
    report = site.run(site.policy(days=30))
    assert [(r.incident_id, r.rule) for r in report.removed] == [
        (old.id, "age"),
        (old.id, "age"),
        (false.id, "age"),
    ]
    assert site.keys() == [recent.snapshot]
    assert report.freed_bytes == 3000 and report.kept_bytes == 1000
    timeline = site.repo.timeline(old.id)
    assert [e.kind for e in timeline][-4:] == [
        "evidence.removed",
        "incident.updated",
        "evidence.removed",
        "incident.updated",
    ]
    assert timeline[-2].detail == {"reason": "retention", "rule": "age", "size": 1000}
    assert sorted(e.detail["changed"][0] for e in timeline[-3::2]) == ["clip", "snapshot"]
    # the incidents no longer point at the files (the API said has_still: true, still 404)
    assert (site.repo.get(old.id).snapshot, site.repo.get(old.id).clip) == (None, None)
    assert site.repo.get(false.id).snapshot is None
    assert site.repo.get(recent.id).snapshot == recent.snapshot
    verified = verify_chain(site.repo.engine, site.store.backend)
    assert verified.ok, verified.problems
    assert (verified.evidence_checked, verified.evidence_removed) == (1, 3)


def test_open_acknowledged_and_running_incidents_are_never_touched(site: Site) -> None:
    kept = [
        site.add("open", days_ago=90, status=IncidentStatus.OPEN),
        site.add("acked", days_ago=90, status=IncidentStatus.ACKNOWLEDGED),
        site.add("running", days_ago=90, status=IncidentStatus.RESOLVED, ended=False),
    ]
    report = site.run(site.policy(days=1, max_bytes=1))
    assert report.removed == []
    assert sorted(site.keys()) == sorted(i.snapshot for i in kept)
    assert report.protected_bytes == 3000
    assert report.over_budget_bytes == 2999


def test_size_budget_removes_oldest_closed_first(site: Site) -> None:
    oldest = site.add("a", days_ago=9, size=4000)
    middle = site.add("b", days_ago=8, size=4000)
    protected = site.add("c", days_ago=10, size=4000, status=IncidentStatus.OPEN)
    newest = site.add("d", days_ago=1, size=4000)
    report = site.run(site.policy(max_bytes=9000))
    assert [(r.incident_id, r.rule) for r in report.removed] == [
        (oldest.id, "size"),
        (middle.id, "size"),
    ]
    assert sorted(site.keys()) == sorted([protected.snapshot, newest.snapshot])
    assert report.kept_bytes == 8000 and report.over_budget_bytes == 0


def test_age_then_size(site: Site) -> None:
    expired = site.add("expired", days_ago=50, size=100)
    older = site.add("older", days_ago=20, size=5000)
    site.add("newer", days_ago=2, size=5000)
    report = site.run(site.policy(days=30, max_bytes=6000))
    assert [(r.incident_id, r.rule) for r in report.removed] == [
        (expired.id, "age"),
        (older.id, "size"),
    ]


def test_dry_run_changes_nothing(site: Site) -> None:
    site.add("old", days_ago=40)
    entries = verify_chain(site.repo.engine, None).entries
    report = site.run(site.policy(days=30), dry_run=True)
    assert len(report.removed) == 1 and report.dry_run
    assert len(site.keys()) == 1
    assert verify_chain(site.repo.engine, None).entries == entries


def test_evidence_of_a_deleted_incident_is_kept_for_verify(site: Site) -> None:
    victim = site.add("deleted", days_ago=60)
    with site.repo.engine.begin() as connection:
        connection.execute(delete(IncidentRow).where(IncidentRow.id == victim.id))
    assert site.run(site.policy(days=30)).removed == []
    assert site.keys() == [victim.snapshot]
    problems = verify_chain(site.repo.engine, site.store.backend).problems
    assert [p.kind for p in problems] == [ProblemKind.DELETED_INCIDENT]


def test_failed_delete_is_recorded_and_swept_next_run(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = site.add("old", days_ago=40)
    real_delete = LocalBlobStore.delete

    def refuse(self: LocalBlobStore, key: str) -> None:
        raise StorageError(f"cannot delete evidence {key}: Device or resource busy")

    monkeypatch.setattr(LocalBlobStore, "delete", refuse)
    first = site.run(site.policy(days=30))
    assert first.failed == [victim.snapshot]
    assert site.keys() == [victim.snapshot]
    assert verify_chain(site.repo.engine, site.store.backend).ok  # removal already chained
    monkeypatch.setattr(LocalBlobStore, "delete", real_delete)
    second = site.run(site.policy(days=30))
    assert second.swept == [victim.snapshot] and second.removed == []
    assert site.keys() == []
    timeline = [e.kind for e in site.repo.timeline(victim.id)]
    assert timeline.count("evidence.removed") == 1


def test_evidence_the_chain_has_no_entry_of_follows_the_same_rules(site: Site) -> None:
    """Stills and clips of incidents adopted from before migrations have no evidence.written
    entry: retention never removed them nor counted them toward max_bytes. The files incidents
    point at join the inventory, under the same rules, and their removal is chained alike."""
    legacy = site.add("legacy", days_ago=40, clip=True, chained=False)
    kept = site.add("legacy-open", days_ago=40, status=IncidentStatus.OPEN, chained=False)
    fresh = site.add("legacy-fresh", days_ago=3, size=5000, chained=False)
    recent = site.add("recent", days_ago=2)
    planned = site.run(site.policy(max_bytes=7000), dry_run=True)
    assert planned.total_bytes == 9000 and planned.protected_bytes == 1000
    assert [(r.key, r.rule) for r in planned.removed] == [
        (legacy.snapshot, "size"),
        (legacy.clip, "size"),
    ]
    report = site.run(site.policy(days=30, max_bytes=5500))
    assert [(r.key, r.rule) for r in report.removed] == [
        (legacy.snapshot, "age"),
        (legacy.clip, "age"),
        (fresh.snapshot, "size"),
    ]
    assert sorted(site.keys()) == sorted([kept.snapshot, recent.snapshot])
    assert (site.repo.get(legacy.id).snapshot, site.repo.get(legacy.id).clip) == (None, None)
    assert site.repo.get(kept.id).snapshot == kept.snapshot
    assert [e.kind for e in site.repo.timeline(legacy.id)][-2:] == [
        "evidence.removed",
        "incident.updated",
    ]
    verified = verify_chain(site.repo.engine, site.store.backend)
    assert verified.ok, verified.problems
    assert site.run(site.policy(days=30, max_bytes=5500)).removed == []


def test_retention_on_s3(s3_server: MotoS3, s3_bucket: str, tmp_path: Path) -> None:
    from safewatch.storage import create_engine_for

    engine = create_engine_for("sqlite:///s.db", tmp_path)
    site = make_site(engine, S3BlobStore(s3_bucket, prefix="site", client=s3_server.client()))
    old = site.add("old", days_ago=40, clip=True)
    recent = site.add("recent", days_ago=1)
    report = site.run(site.policy(days=30))
    assert sorted(r.key for r in report.removed) == sorted([old.snapshot, old.clip])
    assert site.keys() == [recent.snapshot]
    assert verify_chain(engine, site.store.backend).ok
    engine.dispose()


def test_retention_policy_parses_sizes() -> None:
    assert RetentionConfig(max_bytes="2GiB").max_bytes == 2 * 1024**3  # type: ignore[arg-type]
    assert RetentionConfig(max_bytes="500MB").max_bytes == 500_000_000  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="greater than 0"):
        RetentionConfig(days=0)
