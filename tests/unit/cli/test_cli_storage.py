"""``safewatch db``, ``verify`` and ``retention`` as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_support import invoke
from safewatch.config.loader import load_site
from safewatch.domain import Incident, IncidentStatus, Severity, incident_id
from safewatch.errors import StorageError
from safewatch.incidents.site_storage import open_site_storage

T0 = 1_700_000_000.0


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    site = {
        "version": 1,
        "models": {"coco": {"path": "yolox_nano"}},
        "cameras": {"yard": {"source": "/dev/null", "models": ["coco"]}},
        "storage": {"database": db_url, "evidence_dir": "evidence"},
        "retention": {"days": 30},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def populate(config: Path) -> str:
    """One closed, resolved incident with a still, 40 days old; returns the still's key."""
    storage = open_site_storage(load_site(config))
    try:
        key = incident_id("yard", "hardhat", 1, T0)
        still = storage.evidence.write_still(
            key, np.full((48, 64, 3), 90, np.uint8), camera_id="yard", at=T0
        )
        storage.repository.upsert(
            Incident(
                key, "yard", "hardhat", "ppe", Severity.HIGH, (1,), T0, T0 + 5, 0.8, "m", still
            )
        )
        storage.repository.set_status(key, IncidentStatus.ACKNOWLEDGED, actor="ana")
        storage.repository.set_status(key, IncidentStatus.RESOLVED, actor="ana")
        return still
    finally:
        storage.close()


def test_db_upgrade_current_history(config: Path) -> None:
    from safewatch.storage.migrate import head_revision

    head = head_revision()
    code, output = invoke("db", "current", "--config", str(config))
    assert code == 0 and f"revision none; head is {head}" in output
    code, output = invoke("db", "upgrade", "--config", str(config))
    assert code == 0 and f"upgraded empty -> {head}" in output
    code, output = invoke("db", "upgrade", "--config", str(config))
    assert code == 0 and f"already at revision {head}" in output
    code, output = invoke("db", "current", "--config", str(config))
    assert code == 0 and f"revision {head} (head)" in output
    code, output = invoke("db", "history")
    assert code == 0 and output.splitlines()[0].startswith(head)


def test_db_downgrade_and_the_ways_back_that_failed(config: Path) -> None:
    """`db upgrade --revision OLD` said "already at" and did nothing, there was no command to go
    back, and `db current` on a database newer than this safewatch said to run `db upgrade`
    (which then failed)."""
    from sqlalchemy import text

    from safewatch.storage import create_engine_for
    from safewatch.storage.migrate import current_revision, head_revision, history

    head, previous = (r.id for r in history()[:2])
    site = load_site(config)
    engine = create_engine_for(site.config.storage.database, site.base_dir)
    try:
        invoke("db", "upgrade", "--config", str(config))
        with pytest.raises(StorageError, match=f"newer than {previous}: an upgrade never goes"):
            invoke("db", "upgrade", "--config", str(config), "--revision", previous)
        assert current_revision(engine) == head
        code, output = invoke("db", "downgrade", "--config", str(config), "--revision", previous)
        assert code == 0 and f"downgraded {head} -> {previous}" in output
        assert current_revision(engine) == previous
        with pytest.raises(StorageError, match=f"older than {head}: `safewatch db upgrade"):
            invoke("db", "downgrade", "--config", str(config), "--revision", head)
        with pytest.raises(StorageError, match="not a schema revision"):
            invoke("db", "downgrade", "--config", str(config), "--revision", "base")
        assert current_revision(engine) == previous
        invoke("db", "upgrade", "--config", str(config))
        assert current_revision(engine) == head_revision()
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
        code, output = invoke("db", "current", "--config", str(config))
        assert code == 0 and "newer than this safewatch knows" in output
        assert "upgrade safewatch" in output and "run `safewatch db upgrade" not in output
        with pytest.raises(StorageError, match="with the safewatch that upgraded it"):
            invoke("db", "downgrade", "--config", str(config), "--revision", previous)
    finally:
        engine.dispose()


def test_verify_passes_then_names_an_edited_still(config: Path) -> None:
    invoke("db", "upgrade", "--config", str(config))
    still = populate(config)
    code, output = invoke("verify", "--config", str(config))
    assert code == 0, output
    assert "ok: no tampering found" in output and "1 evidence files" in output
    path = config.parent / "evidence" / still
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    code, output = invoke("verify", "--config", str(config))
    assert code == 1
    assert "edited_evidence" in output and still in output
    code, output = invoke("verify", "--config", str(config), "--no-evidence")
    assert code == 0  # the chain and table alone are intact
    code, output = invoke("verify", "--config", str(config), "--json")
    report = json.loads(output)
    assert code == 1 and report["ok"] is False
    assert [p["kind"] for p in report["problems"]] == ["edited_evidence"]
    assert report["problems"][0]["key"] == still


def test_retention_dry_run_then_run(config: Path) -> None:
    invoke("db", "upgrade", "--config", str(config))
    still = populate(config)  # 40+ days old by now (T0 is in 2023)
    code, output = invoke("retention", "--config", str(config), "--dry-run")
    assert code == 0 and f"would remove {still}" in output
    assert (config.parent / "evidence" / still).exists()
    code, output = invoke("retention", "--config", str(config))
    assert code == 0 and f"removed {still} (age" in output
    assert not (config.parent / "evidence" / still).exists()
    code, output = invoke("verify", "--config", str(config))
    assert code == 0 and "(1 removed by retention)" in output


def test_verify_names_the_witness_when_the_newest_entries_are_cut_off(config: Path) -> None:
    """Cut the newest incident out whole (its row, its chain entries) and set the head back: every
    remaining link checks, but the head witnessed in the evidence store is gone."""
    from sqlalchemy import delete, text

    from safewatch.incidents.witness import WitnessWriter
    from safewatch.storage import ChainEntryRow, IncidentRow
    from safewatch.storage.hash_chain import read_head

    invoke("db", "upgrade", "--config", str(config))
    populate(config)
    storage = open_site_storage(load_site(config))
    try:
        before = read_head(storage.engine)
        assert before is not None
        late = incident_id("yard", "hardhat", 2, T0 + 600)
        storage.repository.upsert(
            Incident(late, "yard", "hardhat", "ppe", Severity.HIGH, (2,), T0 + 600, None, 0.8, "m")
        )
        WitnessWriter(storage.evidence.backend, storage.engine).stop()  # a clean shutdown
        with storage.engine.begin() as connection:
            connection.execute(delete(IncidentRow).where(IncidentRow.id == late))
            connection.execute(delete(ChainEntryRow).where(ChainEntryRow.seq > before[0]))
            connection.execute(
                text("UPDATE chain_head SET seq = :s, hash = :h"), {"s": before[0], "h": before[1]}
            )
    finally:
        storage.close()
    code, output = invoke("verify", "--config", str(config), "--no-evidence")
    assert code == 1, output
    assert "witness_mismatch" in output
    assert f"saw entry {before[0] + 1}" in output and "cut off the end" in output
    assert str(config.parent / "evidence") in output  # where the witness is
    code, output = invoke("verify", "--config", str(config), "--json")
    report = json.loads(output)
    assert [p["kind"] for p in report["problems"]] == ["witness_mismatch"]
    assert report["witness"]["seq"] == before[0] + 1
    # latest.json deleted (or an older one put back): the history's highest witness remains.
    # Until December 2026 only latest.json was read, and this cut passed.
    (config.parent / "evidence" / "chain-witness" / "latest.json").unlink()
    code, output = invoke("verify", "--config", str(config), "--json")
    report = json.loads(output)
    assert code == 1 and [p["kind"] for p in report["problems"]] == ["witness_mismatch"]
    assert report["witness"] is None
    (history,) = report["witness_history"]
    assert history["seq"] == before[0] + 1 and history["object"].endswith(f"-{before[0] + 1}.json")
    # Without any witness the cut is invisible: that is the gap they close.
    shutil.rmtree(config.parent / "evidence" / "chain-witness")
    code, output = invoke("verify", "--config", str(config))
    assert code == 0, output
