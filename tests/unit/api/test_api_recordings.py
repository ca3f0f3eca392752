"""The recording around an incident: listed for viewers, played by admins only, every play
logged, ranges for seeking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_support import (
    ELSEWHERE,
    FROM_START,
    add_users,
    client_for,
    incident,
    login,
    make_app,
    make_dashboard,
)
from safewatch.api.dashboard import Dashboard
from safewatch.incidents.site_storage import SiteStorage
from safewatch.recording.export import ExportStats
from safewatch.recording.segments import Segment, segment_path
from safewatch.recording.service import recordings_root

T0 = 1_750_000_000.0


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Dashboard, SiteStorage]]:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    yield dashboard, storage
    storage.close()


def _segments(dashboard: Dashboard) -> list[Path]:
    """Minute-long segments of yard from T0 - 300 s to T0 + 600 s."""
    root = recordings_root(dashboard.site())
    paths = []
    for n in range(-5, 10):
        path = segment_path(root, "yard", T0 + 60 * n, T0 + 60 * (n + 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([n % 256]) * 1000)
        paths.append(path)
    return paths


def test_viewers_see_which_footage_exists_admins_play_it_logged(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    dashboard, storage = site
    _segments(dashboard)
    found = incident(1)  # T0 + 60 to T0 + 64
    storage.repository.upsert(found)
    with client_for(dashboard) as viewer:
        login(viewer, "viewer")
        listed = viewer.get(f"/api/v1/incidents/{found.id}/recording").json()
        assert (listed["since"], listed["until"]) == (T0 + 60 - 120, T0 + 64 + 120)
        starts = [s["start"] for s in listed["segments"]]
        assert starts == [T0 + 60 * n for n in range(-1, 4)]  # every minute touching the span
        url = listed["segments"][0]["url"]
        assert viewer.get(url).status_code == 403  # the camera's own footage: heads not hidden
        narrow = viewer.get(
            f"/api/v1/incidents/{found.id}/recording", params={"before": 0, "after": 0}
        ).json()
        assert [s["start"] for s in narrow["segments"]] == [T0 + 60]
    with client_for(dashboard) as admin:
        login(admin, "admin")
        whole = admin.get(url)
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
        assert whole.content == bytes([255]) * 1000  # n = -1
        part = admin.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and len(part.content) == 10
        records, total = dashboard.auth.audit_records(action="recording.view")
        assert total == 1 and records[0].actor == "admin"  # the seek is not a second view
        assert records[0].subject == url.removeprefix("/api/v1/recordings/")
        missing = admin.get("/api/v1/recordings/yard/2025-06-15/1-2.mp4")
        assert missing.status_code == 422  # not a segment name
        gone = admin.get("/api/v1/recordings/yard/2025-06-15/1750000000000-1750000001000.mp4")
        assert (gone.status_code, gone.json()["error"]) == (404, "not_found")
        escape = admin.get("/api/v1/recordings/..%2F..%2Fetc/2025-06-15/1750000000000-1.mp4")
        assert escape.status_code in (404, 422)


def test_a_running_incident_lists_its_footage_up_to_now(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    """While its episode runs the span ends ``after`` seconds after now, not after its start:
    the footage of a ten-minute-old incident still running is all listed."""
    import dataclasses
    import time

    dashboard, storage = site
    root = recordings_root(dashboard.site())
    now = float(int(time.time()))  # whole seconds: segment names hold milliseconds
    for n in range(-10, 0):  # minute segments of the last ten minutes
        path = segment_path(root, "yard", now + 60 * n, now + 60 * (n + 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    running = dataclasses.replace(incident(1, started=now - 570), ended_at=None)
    storage.repository.upsert(running)
    with client_for(dashboard) as viewer:
        login(viewer, "viewer")
        listed = viewer.get(f"/api/v1/incidents/{running.id}/recording").json()
    assert listed["incident_ended"] is None
    assert listed["until"] >= now + 120
    assert [s["start"] for s in listed["segments"]] == [now + 60 * n for n in range(-10, 0)]


def test_every_request_that_reads_a_segment_from_its_start_is_logged(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    """Logged by what is served, not by the Range header's text (``items=0-`` and ``bytes=00-``
    read the whole segment and were not logged)."""
    dashboard, _ = site
    path = _segments(dashboard)[0]
    url = "/api/v1/recordings/" + path.relative_to(recordings_root(dashboard.site())).as_posix()
    with client_for(dashboard) as admin:
        login(admin, "admin")
        for header in FROM_START + ELSEWHERE:
            before = dashboard.auth.audit_records(action="recording.view")[1]
            answer = admin.get(url, headers={"Range": header} if header else {})
            added = dashboard.auth.audit_records(action="recording.view")[1] - before
            if header in FROM_START:
                assert answer.content == path.read_bytes(), header
            assert added == (header in FROM_START), header


def test_admins_export_a_range_across_segments_as_one_mp4_logged(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    import io
    import threading

    import av

    from assets import asset
    from safewatch.recording import list_segments, record

    dashboard, _ = site
    root = recordings_root(dashboard.site())
    clip = asset("video/construction_cctv_640x352_24s.mp4")  # keyframes at 0, 10.13, 20.25 s
    record(
        lambda: av.open(str(clip)),
        root,
        "yard",
        stop=threading.Event(),
        segment_seconds=5,
        clock=lambda: T0,
        reconnect=False,
    )
    assert len(list_segments(root, "yard")) == 3
    url = "/api/v1/recordings/yard/export"
    span = {"since": T0 + 12, "until": T0 + 22}
    with client_for(dashboard) as viewer:
        login(viewer, "operator")
        assert viewer.get(url, params=span).status_code == 403
    with client_for(dashboard) as admin:
        login(admin, "admin")
        got = admin.get(url, params=span)
        assert got.status_code == 200 and got.headers["content-type"] == "video/mp4"
        assert "yard-" in got.headers["content-disposition"]
        with av.open(io.BytesIO(got.content)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == pytest.approx((22 - 10.13) * 24.7, abs=2)  # from the keyframe before
        backwards = admin.get(url, params={"since": T0 + 22, "until": T0 + 12})
        assert backwards.status_code == 422 and "must be after" in backwards.json()["message"]
        long = admin.get(url, params={"since": T0, "until": T0 + 5 * 3600})
        assert long.status_code == 422 and "at most 4 h" in long.json()["message"]
        assert admin.get(url, params={"since": T0 + 100, "until": T0 + 200}).status_code == 404
    records, total = dashboard.auth.audit_records(action="recording.export")
    assert total == 1 and records[0].actor == "admin" and records[0].subject == "yard"
    assert records[0].detail["segments"] == 2 and records[0].detail["bytes"] == len(got.content)


def test_an_export_is_named_by_its_footage_and_lists_its_gaps(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    """A range starting in an outage starts at the next footage but was named by ``since``;
    the outages inside one were nowhere in the answer."""
    import threading

    import av

    from assets import asset
    from safewatch.recording import list_segments, record

    dashboard, _ = site
    root = recordings_root(dashboard.site())
    clip = asset("video/construction_cctv_640x352_24s.mp4")  # keyframes at 0, 10.13, 20.25 s
    record(
        lambda: av.open(str(clip)), root, "yard", stop=threading.Event(), segment_seconds=5,
        clock=lambda: T0, reconnect=False,
    )  # fmt: skip
    first, middle, last = list_segments(root, "yard")
    middle.path.unlink()  # the camera was off from 10.13 s to 20.25 s
    url = "/api/v1/recordings/yard/export"
    with client_for(dashboard) as admin:
        login(admin, "admin")
        late = admin.get(url, params={"since": T0 + 15, "until": T0 + 23})
        across = admin.get(url, params={"since": T0 + 5, "until": T0 + 23})
    assert 'filename="yard-1750000020-1750000023.mp4"' in late.headers["content-disposition"]
    assert late.headers["x-safewatch-gaps"] == ""
    assert across.headers["x-safewatch-gaps"] == f"{first.end:.3f}-{last.start:.3f}"
    records, _ = dashboard.auth.audit_records(action="recording.export")
    assert [r.detail["gaps"] for r in records] == [[[first.end, last.start]], []]  # newest first


def test_the_gaps_header_of_a_flapping_camera_stays_small(
    site: tuple[Dashboard, SiteStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every gap (~30 bytes) was in ``X-Safewatch-Gaps``: a 4 h export of a flapping camera
    listed >3.5 KB of them and nginx's default 4 KB ``proxy_buffer_size`` answered 502. The
    header lists the first 20; the audit entry keeps them all."""
    from safewatch.api.routes import recordings

    dashboard, _ = site
    _segments(dashboard)
    gaps = tuple((T0 + 10.0 * n, T0 + 10.0 * n + 3.5) for n in range(300))

    def exported(found: list[Segment], since: float, until: float, target: Path) -> Any:
        target.write_bytes(b"\0" * 1000)
        return ExportStats(start=since, end=until, segments=len(found), packets=1, gaps=gaps)

    monkeypatch.setattr(recordings, "export_range", exported)
    with client_for(dashboard) as admin:
        login(admin, "admin")
        answer = admin.get("/api/v1/recordings/yard/export", params={"since": T0, "until": T0 + 9})
    assert answer.status_code == 200
    header = answer.headers["x-safewatch-gaps"]
    shown = ",".join(f"{start:.3f}-{end:.3f}" for start, end in gaps[:20])
    assert header == f"{shown},...(+280 more)"
    assert len(header) < 1024
    (record,) = dashboard.auth.audit_records(action="recording.export")[0]
    assert record.detail["gaps"] == [list(gap) for gap in gaps]


def test_a_segment_deleted_by_retention_meanwhile_is_not_found(
    site: tuple[Dashboard, SiteStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention deleted it between the listing (or the name's check) and the opening: 500."""
    from safewatch.api.routes import recordings

    dashboard, _ = site
    path = _segments(dashboard)[5]  # T0 .. T0 + 60

    def pruned(listed: Any) -> Any:
        def call(*args: Any) -> Any:
            found = listed(*args)
            path.unlink(missing_ok=True)
            return found

        return call

    monkeypatch.setattr(recordings, "read_segment", pruned(recordings.read_segment))
    monkeypatch.setattr(recordings, "segments_between", pruned(recordings.segments_between))
    url = "/api/v1/recordings/" + path.relative_to(recordings_root(dashboard.site())).as_posix()
    with TestClient(make_app(dashboard), raise_server_exceptions=False) as admin:
        login(admin, "admin")
        assert admin.get(url).status_code == 404
        path.write_bytes(b"x")
        span = {"since": T0 + 10, "until": T0 + 20}
        assert admin.get("/api/v1/recordings/yard/export", params=span).status_code == 404


def test_any_cameras_segments_over_a_span_for_the_same_moment(
    site: tuple[Dashboard, SiteStorage],
) -> None:
    dashboard, _ = site
    _segments(dashboard)  # yard, T0 - 300 .. T0 + 600
    with client_for(dashboard) as viewer:
        login(viewer, "viewer")
        got = viewer.get("/api/v1/recordings/yard", params={"since": T0 + 30, "until": T0 + 90})
        assert got.status_code == 200
        assert [s["start"] for s in got.json()["segments"]] == [T0, T0 + 60]
        assert got.json()["segments"][0]["url"].startswith("/api/v1/recordings/yard/")
        none = viewer.get("/api/v1/recordings/dock", params={"since": T0, "until": T0 + 60})
        assert none.status_code == 200 and none.json()["segments"] == []
        bad = viewer.get("/api/v1/recordings/yard", params={"since": T0, "until": T0 - 1})
        assert bad.status_code == 422


def test_a_failed_export_leaves_no_temporary_file(
    site: tuple[Dashboard, SiteStorage], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export that fails after it began writing (an unreadable segment, a full disk, the
    audit log refusing it) removes its folder: the partial file of a 4 h range is GBs, and only
    a successful download's background task removed it."""
    import errno
    import tempfile

    from safewatch.api.routes import recordings
    from safewatch.recording.export import export_range

    dashboard, _ = site
    _segments(dashboard)
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))

    def disk_full(found: list[Segment], since: float, until: float, target: Path) -> Any:
        target.write_bytes(b"\0" * 1000)  # what was written before the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    def refused(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit log is unavailable")

    url = "/api/v1/recordings/yard/export"
    span = {"since": T0 + 12, "until": T0 + 22}
    with TestClient(make_app(dashboard), raise_server_exceptions=False) as admin:
        login(admin, "admin")
        monkeypatch.setattr(recordings, "export_range", disk_full)
        assert admin.get(url, params=span).status_code == 500
        assert list(spool.iterdir()) == []
        monkeypatch.setattr(recordings, "export_range", export_range)
        assert admin.get(url, params=span).status_code == 404  # no footage: not MP4 segments
        assert list(spool.iterdir()) == []
        written: list[Path] = []

        def exported(found: list[Segment], since: float, until: float, target: Path) -> Any:
            written.append(target)
            target.write_bytes(b"\0" * 1000)
            return ExportStats(start=since, end=until, segments=len(found), packets=1)

        monkeypatch.setattr(recordings, "export_range", exported)
        monkeypatch.setattr(dashboard.auth, "audit", refused)
        assert admin.get(url, params=span).status_code == 500
        assert written and list(spool.iterdir()) == []
