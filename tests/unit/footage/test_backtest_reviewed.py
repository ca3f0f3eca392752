"""A backtest reads the reviewed incidents of the site's live database and leaves it as it was;
it reads those its videos cover.

Before, it opened that database through a repository, which migrates SQLite: a site database at
revision 0003 was at the newest revision after a plain ``safewatch backtest`` (so an older server
then refused it), and a 0-byte ``safewatch.db`` became a full schema. And it took one window from
the first video's start to the last one's end: with clips at 00:59:58Z and 03:00:00Z, a reviewed
incident at 02:00Z was "missed" by every rule set (recall 0.00).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from incident_factories import make_incident
from safewatch.config.loader import LoadedSite, load_site
from safewatch.domain.incidents import IncidentStatus
from safewatch.errors import StorageError
from safewatch.footage.backtest import BacktestRun, reviewed_incidents, site_reviewed_incidents
from safewatch.footage.backtest_diff import score
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.storage.migrate import current_revision, upgrade


def site_in(folder: Path) -> LoadedSite:
    (folder / "site.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            site: {name: Yard, timezone: Europe/Berlin}
            models:
              coco: {path: coco.onnx, format: yolox, labels: {person: person}}
            cameras:
              cam-1: {source: clip.mp4, fps: 5, models: [coco]}
            storage: {database: "sqlite:///data/safewatch.db"}
            """
        )
    )
    return load_site(folder / "site.yaml")


RUN = BacktestRun("cam-1", ["baseline"], spans={Path("clip.mp4"): (990.0, 1100.0)})


def test_a_database_at_an_older_schema_is_not_migrated_and_not_scored(tmp_path: Path) -> None:
    site = site_in(tmp_path)
    (tmp_path / "data").mkdir()
    engine = create_engine_for("sqlite:///data/safewatch.db", tmp_path)
    upgrade(engine, "0003")
    engine.dispose()
    with pytest.raises(StorageError, match=r"schema revision 0003.*never migrates"):
        site_reviewed_incidents(site, RUN)
    engine = create_engine_for("sqlite:///data/safewatch.db", tmp_path)
    try:
        assert current_revision(engine) == "0003"
    finally:
        engine.dispose()


def test_an_empty_database_file_stays_empty(tmp_path: Path) -> None:
    site = site_in(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "safewatch.db").write_bytes(b"")
    with pytest.raises(StorageError, match="is empty"):
        site_reviewed_incidents(site, RUN)
    assert (tmp_path / "data" / "safewatch.db").stat().st_size == 0


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    site = site_in(tmp_path)
    with pytest.raises(StorageError, match="does not exist"):
        site_reviewed_incidents(site, RUN)
    assert not (tmp_path / "data").exists()


def test_a_current_database_gives_its_reviewed_incidents(tmp_path: Path) -> None:
    site = site_in(tmp_path)
    engine = create_engine_for("sqlite:///data/safewatch.db", tmp_path)
    repository = IncidentRepository(engine)
    for track, status in ((1, IncidentStatus.RESOLVED), (2, None)):
        incident = make_incident(track, 1010.0, started_at=1000.0)
        repository.upsert(incident)
        if status is not None:
            repository.set_status(incident.id, status, actor="reviewer")
    engine.dispose()
    assert [i.track_ids for i in site_reviewed_incidents(site, RUN)] == [(1,)]


def test_a_read_only_engine_refuses_writes(tmp_path: Path) -> None:
    create_engine_for("sqlite:///x.db", tmp_path).dispose()
    engine = create_engine_for("sqlite:///x.db", tmp_path, read_only=True)
    try:
        with pytest.raises(StorageError, match="readonly"):
            IncidentRepository(engine)  # would create the schema
    finally:
        engine.dispose()


def test_only_incidents_a_video_covers_are_scored(tmp_path: Path) -> None:
    engine = create_engine_for("sqlite:///x.db", tmp_path)
    repository = IncidentRepository(engine)
    cases = {  # track: (start, end); videos cover 3598-3610 and 10800-10812
        1: (3605.0, 3608.0),  # in the first clip
        2: (7200.0, 7210.0),  # between the clips: no footage
        3: (3540.0, 3550.0),  # ended before the first clip began
        4: (3570.0, None),  # began before the first clip, still running in it
        5: (10811.0, 10830.0),  # began at the second clip's end
    }
    for track, (start, end) in cases.items():
        incident = make_incident(track, end, started_at=start)
        repository.upsert(incident)
        repository.set_status(incident.id, IncidentStatus.RESOLVED, actor="reviewer")
    run = BacktestRun(
        "cam-1",
        ["baseline"],
        spans={Path("a.mp4"): (3598.0, 3610.0), Path("b.mp4"): (10800.0, 10812.0)},
    )
    try:
        reviewed = reviewed_incidents(repository, run)
    finally:
        engine.dispose()
    assert [i.track_ids[0] for i in reviewed] == [5, 1, 4]
    raised = [make_incident(track, end, started_at=start) for track, (start, end) in cases.items()]
    assert score(raised[:1] + raised[3:], reviewed).recall == 1.0


def test_an_incident_that_began_long_before_the_footage_and_runs_into_it_is_scored(
    tmp_path: Path,
) -> None:
    """Reviewed incidents were selected by start from a minute before the video: one running for
    five minutes when the clip (3598-3610) began was never scored, by any rule set."""
    engine = create_engine_for("sqlite:///x.db", tmp_path)
    repository = IncidentRepository(engine)
    cases = {1: (3300.0, 3605.0), 2: (3000.0, 3590.0), 3: (100.0, None)}  # 2 ended before it
    for track, (start, end) in cases.items():
        incident = make_incident(track, end, started_at=start)
        repository.upsert(incident)
        repository.set_status(incident.id, IncidentStatus.RESOLVED, actor="reviewer")
    run = BacktestRun("cam-1", ["baseline"], spans={Path("a.mp4"): (3598.0, 3610.0)})
    try:
        reviewed = reviewed_incidents(repository, run)
    finally:
        engine.dispose()
    assert sorted(i.track_ids[0] for i in reviewed) == [1, 3]
