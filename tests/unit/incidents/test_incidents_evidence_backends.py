"""EvidenceStore over its backends: the chain records every write with the stored bytes' hash,
S3 works through the same calls, and the site file picks the backend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import Engine

from db_servers import MotoS3
from safewatch.config.loader import load_site
from safewatch.errors import StorageError
from safewatch.incidents import EvidenceStore
from safewatch.incidents.site_storage import open_site_storage
from safewatch.storage import IncidentRepository, LocalBlobStore, create_engine_for
from safewatch.storage.s3_blobs import S3BlobStore

AT = 1_700_000_000.0  # 2023-11-14 UTC


class RecordingLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, int]] = []

    def evidence_written(
        self, incident_id: str, key: str, sha256: str, size: int, *, camera_id: str
    ) -> None:
        self.calls.append((incident_id, key, sha256, size))


class FailingLog:
    def evidence_written(
        self, incident_id: str, key: str, sha256: str, size: int, *, camera_id: str
    ) -> None:
        raise StorageError("cannot record evidence: database is locked")


def test_every_write_is_logged_with_the_stored_bytes_hash(tmp_path: Path) -> None:
    log = RecordingLog()
    store = EvidenceStore(tmp_path, log=log)
    still = store.write_still("inc1", np.zeros((64, 64, 3), np.uint8), camera_id="yard", at=AT)
    clip_source = tmp_path / "clip.part"
    clip_source.write_bytes(b"mp4 bytes")
    clip = store.write_file("inc1", clip_source, camera_id="yard", at=AT, suffix=".mp4", move=True)
    sealed = store.write_bytes(
        "inc1", b"cipher", camera_id="yard", at=AT, suffix=".orig.jpg.sealed"
    )
    assert [c[1] for c in log.calls] == [still, clip, sealed]
    assert clip == "yard/2023-11-14/inc1.mp4" and sealed == "yard/2023-11-14/inc1.orig.jpg.sealed"
    for incident, key, digest, size in log.calls:
        data = (tmp_path / key).read_bytes()
        assert incident == "inc1"
        assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))


def test_unrecorded_evidence_is_not_kept(tmp_path: Path) -> None:
    """If the chain cannot record a file, the file goes too: verify would call it forged."""
    store = EvidenceStore(tmp_path, log=FailingLog())
    with pytest.raises(StorageError, match="database is locked"):
        store.write_bytes("inc1", b"x", camera_id="yard", at=AT, suffix=".jpg")
    assert list(LocalBlobStore(tmp_path).list()) == []


class BreakableLog(RecordingLog):
    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def evidence_written(
        self, incident_id: str, key: str, sha256: str, size: int, *, camera_id: str
    ) -> None:
        if self.broken:
            raise StorageError("cannot record evidence: database is locked")
        super().evidence_written(incident_id, key, sha256, size, camera_id=camera_id)


def test_an_unrecorded_replacement_puts_the_recorded_file_back(tmp_path: Path) -> None:
    """A better still replaces the first at the same key; if the chain cannot record it, the
    first (recorded, and the incident's only still) must be there as it was, not deleted."""
    log = BreakableLog()
    store = EvidenceStore(tmp_path, log=log)
    key = store.write_bytes("inc1", b"first still", camera_id="yard", at=AT, suffix=".jpg")
    log.broken = True
    with pytest.raises(StorageError, match="database is locked"):
        store.write_bytes("inc1", b"better still", camera_id="yard", at=AT, suffix=".jpg")
    assert (tmp_path / key).read_bytes() == b"first still"
    assert log.calls[-1][2] == hashlib.sha256(b"first still").hexdigest()


@pytest.mark.parametrize("suffix", ["jpg", ".", "..jpg", "/x.jpg", ".j pg"])
def test_bad_suffixes_are_refused(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        EvidenceStore(tmp_path).key_for("inc", camera_id="c", at=AT, suffix=suffix)


def test_evidence_in_s3_through_the_same_calls(
    s3_server: MotoS3, s3_bucket: str, db_engine: Engine
) -> None:
    repo = IncidentRepository(db_engine)
    store = EvidenceStore(
        S3BlobStore(s3_bucket, prefix="north", client=s3_server.client()), log=repo
    )
    key = store.write_still("inc9", np.full((48, 64, 3), 200, np.uint8), camera_id="dock", at=AT)
    assert key == "dock/2023-11-14/inc9.jpg"
    data = store.read_bytes(key)
    assert data[:2] == b"\xff\xd8"  # a JPEG
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=f"north/{key}")
    assert head["ContentType"] == "image/jpeg"
    written = repo.timeline("inc9")
    assert [(e.kind, e.subject, e.digest) for e in written] == [
        ("evidence.written", key, hashlib.sha256(data).hexdigest())
    ]
    assert store.location == f"s3://{s3_bucket}/north/"
    with pytest.raises(StorageError, match="not in a folder"):
        store.path_of(key)


def write_site(tmp_path: Path, storage: dict[str, object]) -> Path:
    site = {
        "version": 1,
        "models": {"coco": {"path": "yolox_nano"}},
        "cameras": {"yard": {"source": "/dev/null", "models": ["coco"]}},
        "storage": storage,
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def test_site_file_chooses_s3(
    s3_server: MotoS3, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_S3_SECRET", "testing")
    config = write_site(
        tmp_path,
        {
            "database": "sqlite:///data/site.db",
            "evidence_s3": {
                "bucket": s3_bucket,
                "prefix": "yard-site/",
                "endpoint_url": s3_server.endpoint_url,
                "region": "us-east-1",
                "access_key_id": "testing",
                "secret_access_key": "${TEST_S3_SECRET}",
                "addressing_style": "path",
            },
        },
    )
    storage = open_site_storage(load_site(config))
    try:
        key = storage.evidence.write_bytes("i1", b"jpeg", camera_id="yard", at=AT, suffix=".jpg")
        objects = s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
        assert [o["Key"] for o in objects] == [f"yard-site/{key}"]
        assert [e.kind for e in storage.repository.timeline("i1")] == ["evidence.written"]
    finally:
        storage.close()
    assert (tmp_path / "data" / "site.db").exists()


def test_site_with_a_missing_bucket_fails_at_start(s3_server: MotoS3, tmp_path: Path) -> None:
    config = write_site(
        tmp_path,
        {
            "database": "sqlite:///site.db",
            "evidence_s3": {
                "bucket": "not-made-yet",
                "endpoint_url": s3_server.endpoint_url,
                "region": "us-east-1",
                "access_key_id": "testing",
                "secret_access_key": "testing",
            },
        },
    )
    with pytest.raises(StorageError, match="S3 bucket 'not-made-yet' does not exist"):
        open_site_storage(load_site(config))


def test_site_defaults_to_the_local_folder(tmp_path: Path) -> None:
    config = write_site(tmp_path, {"evidence_dir": "ev"})
    storage = open_site_storage(load_site(config))
    try:
        key = storage.evidence.write_bytes("i1", b"jpeg", camera_id="yard", at=AT, suffix=".jpg")
        assert (tmp_path / "ev" / key).read_bytes() == b"jpeg"
        assert storage.evidence.root == tmp_path / "ev"
    finally:
        storage.close()


def test_site_on_postgresql_needs_db_upgrade_first(pg_server: object, tmp_path: Path) -> None:
    from db_servers import PostgresServer

    assert isinstance(pg_server, PostgresServer)
    with pg_server.fresh_schema() as url:
        config = write_site(tmp_path, {"database": url})
        with pytest.raises(StorageError, match="run `safewatch db upgrade"):
            open_site_storage(load_site(config))
        engine = create_engine_for(url, tmp_path)
        from safewatch.storage.migrate import upgrade

        upgrade(engine)
        engine.dispose()
        storage = open_site_storage(load_site(config))
        storage.close()
