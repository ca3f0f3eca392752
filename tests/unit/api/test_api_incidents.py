"""Incidents, evidence, statistics and reports through the API, on a fresh SQLite per test."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
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
    make_dashboard,
    write_still,
)
from safewatch.api.dashboard import Dashboard
from safewatch.domain import IncidentStatus, Severity
from safewatch.errors import StorageError
from safewatch.incidents.site_storage import SiteStorage


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Dashboard, SiteStorage]]:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    yield dashboard, storage
    storage.close()


@pytest.fixture
def operator(site: tuple[Dashboard, SiteStorage]) -> Iterator[tuple[TestClient, str]]:
    with client_for(site[0]) as client:
        yield client, login(client, "operator")


def test_list_filters_and_pages_newest_first(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    _, storage = site
    client, _ = operator
    for n in range(12):
        storage.repository.upsert(
            incident(
                n,
                camera="yard" if n % 3 else "dock",
                severity=Severity.LOW if n % 2 else Severity.HIGH,
            )
        )
    page = client.get("/api/v1/incidents", params={"limit": 5}).json()
    assert (page["total"], len(page["items"]), page["has_more"]) == (12, 5, True)
    starts = [i["started_at"] for i in page["items"]]
    assert starts == sorted(starts, reverse=True)
    last = client.get("/api/v1/incidents", params={"limit": 5, "offset": 10}).json()
    assert (len(last["items"]), last["has_more"]) == (2, False)
    yard_high = client.get(
        "/api/v1/incidents", params={"camera": "yard", "severity": "high"}
    ).json()
    expected = {n for n in range(12) if n % 3 and not n % 2}
    assert {i["track_ids"][0] for i in yard_high["items"]} == expected
    window = client.get(
        "/api/v1/incidents",
        params={"since": 1_750_000_000 + 60 * 3, "until": 1_750_000_000 + 60 * 6},
    ).json()
    assert sorted(i["track_ids"][0] for i in window["items"]) == [3, 4, 5]
    bad = client.get("/api/v1/incidents", params={"severity": "huge", "limit": 0})
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_request"
    assert {d["field"] for d in bad.json()["details"]} >= {"severity.0", "limit"}


def test_lifecycle_and_notes_land_in_the_timeline(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    _, storage = site
    client, csrf = operator
    found = incident(1)
    storage.repository.upsert(found)
    headers = {"X-CSRF-Token": csrf}
    early = client.post(
        f"/api/v1/incidents/{found.id}/transition", json={"status": "resolved"}, headers=headers
    )
    assert (early.status_code, early.json()["error"]) == (409, "invalid_transition")
    for status in ("acknowledged", "resolved"):
        done = client.post(
            f"/api/v1/incidents/{found.id}/transition",
            json={"status": status, "note": f"{status} after a look"},
            headers=headers,
        )
        assert done.status_code == 200
    note = client.post(
        f"/api/v1/incidents/{found.id}/notes", json={"text": "talked to the crew"}, headers=headers
    )
    assert note.json()["summary"] == "note by operator: talked to the crew"
    detail = client.get(f"/api/v1/incidents/{found.id}").json()
    assert detail["incident"]["status"] == "resolved"
    assert detail["allowed"] == []
    summaries = [e["summary"] for e in detail["timeline"]]
    assert "acknowledged -> resolved by operator: resolved after a look" in summaries
    assert summaries[-1] == "note by operator: talked to the crew"
    missing = client.get("/api/v1/incidents/0000000000000000dead")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_a_malformed_json_body_is_said_to_be_malformed_json(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    """The JSON decoder's character offset was read as a field: "invalid request: 1: JSON
    decode error", with field "1"."""
    _, storage = site
    client, csrf = operator
    found = incident(1)
    storage.repository.upsert(found)
    bad = client.post(
        f"/api/v1/incidents/{found.id}/transition",
        content=b"{bad json",
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_request")
    assert bad.json()["message"] == (
        "invalid request: malformed JSON at character 1: Expecting property name enclosed in "
        "double quotes"
    )
    assert [detail["field"] for detail in bad.json()["details"]] == [None]


def test_a_decision_takes_as_long_a_note_as_the_note_box(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    """The incident page's one note box takes 4000 characters and /notes accepts them, but a
    decision sent with that note was refused (422) past 2000."""
    _, storage = site
    client, csrf = operator
    headers = {"X-CSRF-Token": csrf}
    storage.repository.upsert(found := incident(1))
    storage.repository.upsert(other := incident(2))
    note = "checked the whole area; " * 166 + "ok" * 8  # 4000 characters
    assert len(note) == 4000
    done = client.post(
        f"/api/v1/incidents/{found.id}/transition",
        json={"status": "acknowledged", "note": note},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    timeline = client.get(f"/api/v1/incidents/{found.id}").json()["timeline"]
    assert timeline[-1]["summary"].endswith(note)
    bulk = client.post(
        "/api/v1/incidents/transitions",
        json={"ids": [other.id], "status": "acknowledged", "note": note},
        headers=headers,
    )
    assert bulk.status_code == 200 and bulk.json()["changed"], bulk.text
    for path, body in (
        (f"/api/v1/incidents/{found.id}/transition", {"status": "resolved"}),
        ("/api/v1/incidents/transitions", {"ids": [other.id], "status": "resolved"}),
        (f"/api/v1/incidents/{found.id}/notes", {}),
    ):
        field = "text" if path.endswith("/notes") else "note"
        longer = client.post(path, json={**body, field: note + "!"}, headers=headers)
        assert longer.status_code == 422, (path, longer.text)


def test_bulk_transition_changes_each_records_each_and_audits_the_decision(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    dashboard, storage = site
    client, csrf = operator
    flood = [incident(n) for n in range(4)]
    for found in flood:
        storage.repository.upsert(found)
    storage.repository.upsert(closed := incident(9, status=IncidentStatus.RESOLVED))
    ids = [f.id for f in flood]
    body = {"ids": [*ids, ids[0], closed.id, "0000000000000000dead"], "status": "resolved"}
    unprotected = client.post("/api/v1/incidents/transitions", json=body)
    assert (unprotected.status_code, unprotected.json()["error"]) == (403, "csrf_failed")
    done = client.post("/api/v1/incidents/transitions", json=body, headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200, done.text
    result = done.json()
    assert [i["id"] for i in result["changed"]] == ids
    assert {i["status"] for i in result["changed"]} == {"resolved"}
    assert {f["id"]: f["error"] for f in result["failed"]} == {
        closed.id: "invalid_transition",
        "0000000000000000dead": "not_found",
    }
    # Open ones were taken first: both steps are in each timeline, under the operator's name.
    summaries = [e["summary"] for e in client.get(f"/api/v1/incidents/{ids[2]}").json()["timeline"]]
    assert "open -> acknowledged by operator" in summaries
    assert "acknowledged -> resolved by operator" in summaries
    records, total = dashboard.auth.audit_records(action="incidents.transition")
    assert total == 1
    assert (records[0].actor, records[0].detail["changed"]) == ("operator", ids)
    strict = client.post(
        "/api/v1/incidents/transitions",
        json={"ids": [incident(20).id], "status": "resolved", "take_open": False},
        headers={"X-CSRF-Token": csrf},
    )
    assert strict.json()["failed"][0]["error"] == "not_found"
    storage.repository.upsert(fresh := incident(21))
    strict = client.post(
        "/api/v1/incidents/transitions",
        json={"ids": [fresh.id], "status": "resolved", "take_open": False},
        headers={"X-CSRF-Token": csrf},
    )
    assert strict.json()["failed"][0]["error"] == "invalid_transition"
    bad = client.post(
        "/api/v1/incidents/transitions",
        json={"ids": ["../etc"], "status": "resolved"},
        headers={"X-CSRF-Token": csrf},
    )
    assert bad.status_code == 422


def test_bulk_resolve_goes_on_when_a_colleague_acknowledged_after_the_read(
    site: tuple[Dashboard, SiteStorage],
    operator: tuple[TestClient, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dashboard, storage = site
    client, csrf = operator
    storage.repository.upsert(found := incident(3))
    read = storage.repository.get

    def read_then_colleague_takes_it(incident_id: str) -> Any:
        current = read(incident_id)
        # The colleague's acknowledge lands between the bulk call's read and its own step.
        if current.status is IncidentStatus.OPEN:
            dashboard.lifecycle.acknowledge(incident_id, actor="colleague")
        return current

    monkeypatch.setattr(storage.repository, "get", read_then_colleague_takes_it)
    done = client.post(
        "/api/v1/incidents/transitions",
        json={"ids": [found.id], "status": "resolved"},
        headers={"X-CSRF-Token": csrf},
    )
    assert done.status_code == 200, done.text
    assert done.json()["failed"] == []
    assert [i["status"] for i in done.json()["changed"]] == ["resolved"]
    monkeypatch.undo()
    timeline = client.get(f"/api/v1/incidents/{found.id}").json()["timeline"]
    summaries = [e["summary"] for e in timeline]
    assert "open -> acknowledged by colleague" in summaries
    assert "acknowledged -> resolved by operator" in summaries


def test_evidence_streams_with_ranges_and_views_are_audited(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    dashboard, storage = site
    client, _ = operator
    found = write_still(storage, incident(2))
    clip_bytes = bytes(range(256)) * 40
    key = storage.evidence.write_bytes(
        found.id, clip_bytes, camera_id=found.camera_id, at=found.started_at, suffix=".mp4"
    )
    storage.repository.upsert(replace(found, clip=key))
    still = client.get(f"/api/v1/incidents/{found.id}/still")
    assert still.headers["content-type"] == "image/jpeg"
    assert still.content[:2] == b"\xff\xd8"
    whole = client.get(f"/api/v1/incidents/{found.id}/clip")
    assert whole.status_code == 200 and whole.content == clip_bytes
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/v1/incidents/{found.id}/clip", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(clip_bytes)}"
    assert part.content == clip_bytes[100:300]
    tail = client.get(f"/api/v1/incidents/{found.id}/clip", headers={"Range": "bytes=-10"})
    assert tail.content == clip_bytes[-10:]
    outside = client.get(f"/api/v1/incidents/{found.id}/clip", headers={"Range": "bytes=99999-"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == f"bytes */{len(clip_bytes)}"
    records, _ = dashboard.auth.audit_records(action="evidence.view")
    # still, the whole clip: two playback starts; ranges in the middle are not new views
    assert [(r.actor, r.detail["file"]) for r in records] == [
        ("operator", "clip"),
        ("operator", "still"),
    ]
    assert client.get(f"/api/v1/incidents/{incident(3).id}/still").status_code == 404


def test_every_request_that_reads_evidence_from_its_start_is_audited(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    """A view is audited by what is served, not by the Range header's text: ``items=0-`` and
    ``bytes=00-`` read the whole clip and were not logged."""
    dashboard, storage = site
    client, _ = operator
    found = incident(2)
    clip_bytes = bytes(range(256)) * 40
    key = storage.evidence.write_bytes(
        found.id, clip_bytes, camera_id=found.camera_id, at=found.started_at, suffix=".mp4"
    )
    storage.repository.upsert(replace(found, clip=key))
    url = f"/api/v1/incidents/{found.id}/clip"
    for header in FROM_START + ELSEWHERE:
        before = dashboard.auth.audit_records(action="evidence.view")[1]
        answer = client.get(url, headers={"Range": header} if header else {})
        added = dashboard.auth.audit_records(action="evidence.view")[1] - before
        if header in FROM_START:
            assert answer.content[:5] == clip_bytes[:5], header
        assert added == (header in FROM_START), header


def test_a_still_replaced_while_it_is_requested_comes_whole(
    site: tuple[Dashboard, SiteStorage],
    operator: tuple[TestClient, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A running incident's still is replaced when a clearer frame comes: one replaced between
    the request's look-up and its read is served whole, at its own length."""
    _, storage = site
    client, _ = operator
    found = write_still(storage, incident(2))
    storage.repository.upsert(found)
    assert found.snapshot is not None
    clearer = storage.evidence.read_bytes(found.snapshot) + b"\0" * 5000
    open_file = storage.evidence.open_sized

    def replaced_first(key: str) -> Any:
        storage.evidence.write_bytes(
            found.id, clearer, camera_id=found.camera_id, at=found.started_at, suffix=".jpg"
        )
        return open_file(key)

    monkeypatch.setattr(storage.evidence, "open_sized", replaced_first)
    still = client.get(f"/api/v1/incidents/{found.id}/still")
    assert still.status_code == 200
    assert still.headers["content-length"] == str(len(clearer))
    assert still.content == clearer


def test_stats_group_in_the_site_time_zone(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    _, storage = site
    client, _ = operator
    # 22:30 UTC on 2025-06-15 is 00:30 on the 16th in Berlin (UTC+2).
    late = 1_750_026_600.0
    storage.repository.upsert(incident(1, started=late))
    storage.repository.upsert(
        incident(2, started=late - 3 * 3600, rule="no-entry-drop-zone", kind="zone_intrusion")
    )
    by_day = client.get("/api/v1/stats", params={"by": "day"}).json()
    assert by_day["timezone"] == "Europe/Berlin"
    assert [b["count"] for b in by_day["buckets"]] == [1, 1]
    by_rule = client.get("/api/v1/stats", params=[("by", "rule"), ("kind", "ppe")]).json()
    assert by_rule["buckets"] == [
        {
            "count": 1,
            "rule": "hardhat-required",
            "start": None,
            "camera": None,
            "kind": None,
            "severity": None,
            "status": None,
        }
    ]
    assert client.get("/api/v1/stats", params=[("by", "day"), ("by", "hour")]).status_code == 400


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_pdf_report_text_and_audit(
    tmp_path: Path, site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    dashboard, storage = site
    client, _ = operator
    for n in range(4):
        storage.repository.upsert(write_still(storage, incident(n)))
    storage.repository.upsert(incident(9, camera="dock", status=IncidentStatus.OPEN))
    response = client.get("/api/v1/reports/incidents.pdf", params={"camera": "yard", "stills": 2})
    assert response.headers["content-type"] == "application/pdf"
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(response.content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Incident report: Test yard" in text
    assert "Total incidents: 4" in text
    assert "camera: yard" in text
    assert "person #3 without hardhat" in text
    assert "dock" not in text.split("Incidents\n", 1)[-1].split("Evidence stills")[0]
    assert "Evidence stills (heads hidden)" in text
    records, _ = dashboard.auth.audit_records(action="report.export")
    assert records[0].detail == {"filters": ["camera: yard"], "incidents": 4, "stills": 2}


def _page_data(client: TestClient, path: str) -> dict[str, Any]:
    """The JSON a dashboard page hands its script (``data-page-data`` on ``<main>``)."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'data-page-data="([^"]*)"', page.text)
    assert found is not None
    data: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return data


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_a_removed_camera_with_incidents_is_offered_reported_and_counted(
    tmp_path: Path, site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    """A camera removed from the site file (or renamed: its old id) keeps its incidents, but
    the Incidents, Analytics and Reports pages offered only the site's cameras now, so those
    incidents could not be picked. The pages list it (marked removed, after the site's
    cameras), and the statistics and the report take its id and answer its incidents. The same
    for a rule removed from the rule set (or renamed)."""
    _, storage = site
    client, _ = operator
    for n in range(3):
        storage.repository.upsert(incident(n, camera="gone"))
    storage.repository.upsert(incident(5, camera="yard"))
    storage.repository.upsert(incident(6, camera="yard", rule="old-hoist", kind="zone_intrusion"))
    for path in ("/incidents", "/analytics", "/reports"):
        data = _page_data(client, path)
        assert data["cameras"] == [
            {"id": "yard", "name": "Yard 01"},
            {"id": "dock", "name": "dock"},
            {"id": "gone", "name": "gone", "removed": True},
        ], path
        assert data["rules"] == [
            {"id": "hardhat-required", "kind": "ppe"},
            {"id": "no-entry-drop-zone", "kind": "zone_intrusion"},
            {"id": "old-hoist", "kind": "zone_intrusion", "removed": True},
        ], path
    assert _page_data(client, "/audit")["rules"][-1]["id"] == "no-entry-drop-zone"
    by_rule = client.get("/api/v1/stats", params={"by": "rule", "rule": "old-hoist"})
    assert by_rule.json()["total"] == 1
    # The audit page runs cameras: a removed one cannot be chosen there.
    assert [c["id"] for c in _page_data(client, "/audit")["cameras"]] == ["yard", "dock"]
    counts = client.get("/api/v1/stats", params={"by": "camera", "camera": "gone"})
    assert counts.status_code == 200
    assert (counts.json()["total"], counts.json()["buckets"][0]["camera"]) == (3, "gone")
    report = client.get("/api/v1/reports/incidents.pdf", params={"camera": "gone"})
    assert report.status_code == 200
    pdf = tmp_path / "gone.pdf"
    pdf.write_bytes(report.content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "camera: gone" in text
    assert "Total incidents: 3" in text
    listed = text.split("Incidents\n", 1)[-1]
    assert all(f"person #{n} without hardhat" in listed for n in range(3))
    assert "person #5" not in listed


def test_viewers_are_not_offered_the_reports_page(site: tuple[Dashboard, SiteStorage]) -> None:
    """A viewer saw Reports in the menu and a Download PDF button that answered 403: the menu
    leaves it out for viewers and the page says it is for operators."""
    with client_for(site[0]) as client:
        login(client, "viewer")
        page = client.get("/reports")
        assert page.status_code == 200
        assert 'href="/reports"' not in page.text and "Download PDF" not in page.text
        assert "Reports are for operators only" in page.text
        assert "/static/js/reports.js" not in page.text
        assert 'href="/reports"' not in client.get("/incidents").text
    with client_for(site[0]) as client:
        login(client, "operator")
        page = client.get("/reports")
        assert 'href="/reports"' in page.text and "Download PDF" in page.text
        assert "operators only" not in page.text


def test_the_filter_pages_open_with_the_site_cameras_while_the_database_is_down(
    site: tuple[Dashboard, SiteStorage],
    operator: tuple[TestClient, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stored cameras are read from the database; when it cannot be read the page still
    opens with the site's cameras (it opened without reading the database before)."""
    client, _ = operator
    site[1].repository.upsert(incident(1, camera="gone"))

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise StorageError("database unreachable")

    monkeypatch.setattr(site[1].repository, "aggregate", down)
    assert [c["id"] for c in _page_data(client, "/reports")["cameras"]] == ["yard", "dock"]


def test_the_report_counts_every_day_of_its_period(site: tuple[Dashboard, SiteStorage]) -> None:
    """Quiet days are zero bars: the aggregate returns only busy days, and the chart used to
    draw two incidents a week apart on adjacent bars."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from safewatch.api.routes.reports import build_report
    from safewatch.storage import IncidentFilter

    dashboard, storage = site
    berlin = ZoneInfo("Europe/Berlin")  # the test site's zone; 2025-03-30 has 23 hours

    def at(day: int, hour: int = 12) -> float:
        return datetime(2025, 3, day, hour, tzinfo=berlin).timestamp()

    storage.repository.upsert(incident(1, started=at(27)))
    storage.repository.upsert(incident(2, started=at(27, 13)))
    storage.repository.upsert(incident(3, started=at(31)))
    where = IncidentFilter(since=at(26, 0), until=at(31, 23))
    report = build_report(dashboard, where, "operator", stills=0)
    days = [
        (datetime.fromtimestamp(b.start or 0, berlin).strftime("%m-%d"), b.count)
        for b in report.by_day
    ]
    assert days == [
        ("03-26", 0), ("03-27", 2), ("03-28", 0), ("03-29", 0), ("03-30", 0), ("03-31", 1),
    ]  # fmt: skip


def test_a_report_over_any_period_draws_at_most_a_year_of_bars(
    site: tuple[Dashboard, SiteStorage], operator: tuple[TestClient, str]
) -> None:
    """The filter allows ``since=0&until=1e11``: the report made a bar for each of its 1.16 M
    days (5 s) and asked ReportLab to draw them. The bars now run from the first incident (for a
    period longer than a year) to now at the latest, in weeks, months or years when longer."""
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from safewatch.api.routes.reports import MAX_BARS, over_time
    from safewatch.storage import Bucket, IncidentFilter

    berlin = ZoneInfo("Europe/Berlin")  # the test site's zone

    def midnight(day: date) -> float:
        return datetime(day.year, day.month, day.day, tzinfo=berlin).timestamp()

    def bars(
        days: dict[date, int], since: float | None, until: float | None, now: date
    ) -> tuple[str, list[tuple[str, int]]]:
        data = [Bucket(count=n, start=midnight(d)) for d, n in days.items()]
        unit, drawn = over_time(
            data, IncidentFilter(since=since, until=until), berlin, midnight(now) + 3600
        )
        assert len(drawn) <= MAX_BARS and sum(b.count for b in drawn) == sum(days.values())
        shown = [
            (datetime.fromtimestamp(b.start or 0, berlin).strftime("%Y-%m-%d"), b.count)
            for b in drawn
        ]
        return unit, shown

    everything = {"since": 0.0, "until": 1e11}
    assert bars({}, **everything, now=date(2025, 4, 2)) == ("day", [])
    # From the first incident, not 1970; to today, not the year 5138.
    unit, shown = bars(
        {date(2025, 3, 27): 2, date(2025, 3, 31): 1}, **everything, now=date(2025, 4, 2)
    )
    assert unit == "day"
    assert shown == [
        ("2025-03-27", 2), ("2025-03-28", 0), ("2025-03-29", 0), ("2025-03-30", 0),
        ("2025-03-31", 1), ("2025-04-01", 0), ("2025-04-02", 0),
    ]  # fmt: skip
    # March exported on the 15th: its first quiet days are bars, the days still to come are not.
    unit, shown = bars(
        {date(2025, 3, 5): 1},
        midnight(date(2025, 3, 1)),
        midnight(date(2025, 4, 1)),
        date(2025, 3, 15),
    )
    assert (unit, len(shown), shown[0], shown[4]) == (
        "day",
        15,
        ("2025-03-01", 0),
        ("2025-03-05", 1),
    )
    # A year exported day by day.
    year = {date(2025, 1, 1): 1, date(2025, 12, 31): 1}
    assert (
        bars(year, midnight(date(2025, 1, 1)), midnight(date(2026, 1, 1)), date(2026, 2, 1))[0]
        == "day"
    )
    # Two years: weeks, each starting on a Monday, quiet ones at zero.
    unit, shown = bars(
        {date(2024, 1, 10): 3, date(2025, 12, 20): 4}, None, None, date(2025, 12, 31)
    )
    assert unit == "week" and len(shown) == 104
    assert shown[0] == ("2024-01-08", 3) and shown[-3] == ("2025-12-15", 4) and shown[1][1] == 0
    assert all(date.fromisoformat(d).weekday() == 0 for d, _ in shown)
    # Ten years: months; an incident dated 1970 (a camera without a clock): years.
    unit, shown = bars({date(2015, 6, 1): 1, date(2025, 6, 1): 1}, None, None, date(2025, 6, 2))
    assert (unit, len(shown), shown[0]) == ("month", 121, ("2015-06-01", 1))
    unit, shown = bars(
        {date(1970, 1, 2): 1, date(2025, 6, 1): 1}, **everything, now=date(2025, 6, 2)
    )
    assert (unit, len(shown), shown[0], shown[-1]) == (
        "year",
        56,
        ("1970-01-01", 1),
        ("2025-01-01", 1),
    )

    # Through the API: a PDF of every incident ever, day by day from the first.
    _, storage = site
    client, _ = operator
    storage.repository.upsert(incident(1))
    report = client.get("/api/v1/reports/incidents.pdf", params=everything)
    assert report.status_code == 200 and report.content.startswith(b"%PDF")


def test_report_stills_follow_their_cameras_privacy_setting(tmp_path: Path) -> None:
    """The PDF said "heads hidden" over every still, even of a camera whose privacy is off."""
    from safewatch.api.routes.reports import build_report
    from safewatch.storage import IncidentFilter

    cameras = {
        "yard": {"source": "yard.mp4", "models": ["coco", "ppe"], "privacy": {"mode": "off"}},
        "dock": {"source": "yard.mp4", "models": ["coco"]},
    }
    dashboard, storage = make_dashboard(tmp_path, site_extra={"cameras": cameras})
    try:
        storage.repository.upsert(write_still(storage, incident(1)))
        storage.repository.upsert(write_still(storage, incident(2, camera="dock")))
        report = build_report(dashboard, IncidentFilter(), "operator", stills=2)
        hidden = {still.incident.camera_id: still.heads_hidden for still in report.stills}
        assert hidden == {"yard": False, "dock": True}
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("privacy", "said"),
    [
        ({"mode": "off"}, "(heads not hidden: privacy is off)"),
        ({"mode": "blur"}, "(heads hidden)"),
    ],
)
def test_the_reports_page_words_stills_as_the_site_privacy_is(
    tmp_path: Path, privacy: dict[str, str], said: str
) -> None:
    """The Reports page said the stills are "(heads hidden)" even with privacy off; it now says
    what the PDF says of them."""
    dashboard, storage = make_dashboard(tmp_path, site_extra={"privacy": privacy})
    add_users(dashboard)
    try:
        with client_for(dashboard) as client:
            login(client, "operator")
            page = client.get("/reports").text
        assert f"evidence stills {said}." in page
    finally:
        storage.close()
