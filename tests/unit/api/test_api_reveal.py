"""Revealing a sealed original from the dashboard, with evidence in a folder or in S3.

With evidence in S3 every reveal failed (503: the evidence store has no folder for the reveal log),
after the audit log had recorded it as done. The audit record now carries the outcome, and an S3
site journals reveals in its local ``evidence_dir``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_support import add_users, client_for, incident, login, make_dashboard
from db_servers import MotoS3
from safewatch.api.dashboard import Dashboard
from safewatch.incidents.recorder import ORIGINAL_STILL_SUFFIX
from safewatch.incidents.sealed import REVEAL_LOG, EvidenceKey, generate_key, reveal_records, seal
from safewatch.incidents.site_storage import SiteStorage

ENV = "TEST_REVEAL_KEY"
ORIGINAL = b"\xff\xd8 the unblurred original \xff\xd9"


def sealed_incident(storage: SiteStorage, key: str) -> str:
    """An incident whose sealed original still is in the store; returns its id."""
    found = incident(1)
    storage.repository.upsert(found)
    name = storage.evidence.key_for(
        found.id, camera_id=found.camera_id, at=found.started_at, suffix=ORIGINAL_STILL_SUFFIX
    )
    blob = seal(ORIGINAL, EvidenceKey.from_env(ENV, {ENV: key}), context=name)
    written = storage.evidence.write_bytes(
        found.id, blob, camera_id=found.camera_id, at=found.started_at, suffix=ORIGINAL_STILL_SUFFIX
    )
    assert written == name
    return found.id


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = generate_key()
    monkeypatch.setenv(ENV, value)
    return value


def site_with(
    tmp_path: Path, storage: dict[str, Any]
) -> Iterator[tuple[Dashboard, SiteStorage, TestClient, str]]:
    extra = {"storage": storage, "evidence": {"keep_originals": True, "key_env": ENV}}
    dashboard, site_storage = make_dashboard(tmp_path, site_extra=extra)
    add_users(dashboard)
    try:
        with client_for(dashboard) as client:
            yield dashboard, site_storage, client, login(client, "admin")
    finally:
        site_storage.close()


def reveal_audits(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/api/v1/audit-log", params={"action": "evidence.reveal"})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_reveal_from_s3_evidence_works_and_is_journalled_locally(
    tmp_path: Path, key: str, s3_server: MotoS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_S3_SECRET", "testing")
    storage = {
        "database": "sqlite:///data/safewatch.db",
        "evidence_dir": "data/spool",
        "evidence_s3": {
            "bucket": s3_bucket,
            "endpoint_url": s3_server.endpoint_url,
            "region": "us-east-1",
            "access_key_id": "testing",
            "secret_access_key": "${TEST_S3_SECRET}",
            "addressing_style": "path",
        },
    }
    for _dashboard, site_storage, client, csrf in site_with(tmp_path, storage):
        incident_id = sealed_incident(site_storage, key)
        response = client.post(
            f"/api/v1/incidents/{incident_id}/reveal",
            json={"reason": "HSE case 77", "file": "still"},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status_code == 200, response.text
        assert response.content == ORIGINAL
        (journalled,) = reveal_records(tmp_path / "data" / "spool" / REVEAL_LOG)
        assert (journalled["actor"], journalled["outcome"]) == ("admin", "revealed")
        (audited,) = reveal_audits(client)
        assert audited["detail"]["outcome"] == "revealed"


def test_a_refused_reveal_is_audited_as_refused(tmp_path: Path, key: str) -> None:
    storage = {"database": "sqlite:///data/safewatch.db", "evidence_dir": "data/evidence"}
    for _dashboard, site_storage, client, csrf in site_with(tmp_path, storage):
        incident_id = sealed_incident(site_storage, generate_key())  # sealed under another key
        response = client.post(
            f"/api/v1/incidents/{incident_id}/reveal",
            json={"reason": "HSE case 78", "file": "still"},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status_code >= 400
        (audited,) = reveal_audits(client)
        assert audited["detail"]["outcome"].startswith("refused: ")
        (journalled,) = reveal_records(tmp_path / "data" / "evidence" / REVEAL_LOG)
        assert journalled["outcome"].startswith("refused: ")
