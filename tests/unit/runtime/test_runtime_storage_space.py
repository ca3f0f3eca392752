"""safewatch_storage_free_bytes: the free space of each storage folder, and the guard the
SafewatchStorageLow alert compares it with (a full disk stopped incident writes unannounced)."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api_support import write_site
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage
from safewatch.runtime.storage_space import StorageSpaceCollector, storage_roots


def test_the_roots_are_the_recordings_local_evidence_and_the_sqlite_folder(
    tmp_path: Path,
) -> None:
    path = write_site(tmp_path, source="rtsp://127.0.0.1:9/cam")
    site = load_site(path)
    storage = open_site_storage(site)
    try:
        roots = storage_roots(site, storage.engine)
    finally:
        storage.close()
    config = site.config.storage
    assert roots["recordings"] == site.base_dir / config.recordings_dir
    assert roots["evidence"] == site.base_dir / config.evidence_dir
    database = storage.engine.url.database
    assert database is not None
    assert roots["database"] == Path(database).parent
    assert (roots["database"] / Path(database).name).is_file()

    raw = yaml.safe_load(path.read_text())
    raw["storage"]["evidence_s3"] = {"bucket": "evidence"}
    path.write_text(yaml.safe_dump(raw))
    in_s3 = load_site(path)
    assert "evidence" not in storage_roots(in_s3, storage.engine)


def test_each_root_and_its_guard_are_exported_at_every_scrape(tmp_path: Path) -> None:
    full = {tmp_path / "rec": 1_000, tmp_path / "db": 5_000_000_000}
    registry = CollectorRegistry()
    roots = {"recordings": tmp_path / "rec", "database": tmp_path / "db", "evidence": tmp_path}

    def free_bytes(folder: Path) -> int:
        if folder not in full:
            raise FileNotFoundError(folder)  # not created yet: left out
        return full[folder]

    registry.register(StorageSpaceCollector(roots, 2.0, free_bytes))
    series = {
        (sample.name, sample.labels["root"]): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    assert series == {
        ("safewatch_storage_free_bytes", "recordings"): 1_000,
        ("safewatch_storage_free_bytes", "database"): 5e9,
        ("safewatch_storage_min_free_bytes", "recordings"): 2e9,
        ("safewatch_storage_min_free_bytes", "database"): 2e9,
    }
    full[tmp_path / "rec"] = 3_000_000_000  # read at the scrape, never stale
    again = generate_latest(registry).decode()
    assert 'safewatch_storage_free_bytes{root="recordings"} 3e+09' in again
