"""The PDF report prints text beyond Latin-1 where a Unicode font is installed.

Before, every text was set in ReportLab's Helvetica, which knows Latin-1 only: a site named
"Werk Łódź" came out as "Werk ■ód■" (read back with ``pdftotext``).
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from incident_factories import make_incident
from safewatch.domain import Incident, IncidentStatus
from safewatch.reports import ReportData, ReportStill, render_incident_report
from safewatch.reports.fonts import candidates, fallback_files


def pdf_text(data: ReportData, tmp_path: Path) -> str:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_incident_report(data))
    return subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


def yard_report(incidents: list[Incident], **more: Any) -> ReportData:
    """A report of site "Yard" (Europe/Berlin) with ``incidents``, no filter, made by an
    operator; ``more`` sets the other fields."""
    fields: dict[str, Any] = {
        "site": "Yard",
        "timezone": "Europe/Berlin",
        "filters": [],
        "generated_by": "operator",
        "generated_at": 1000.0,
        "total": len(incidents),
        "incidents": incidents,
    }
    return ReportData(**{**fields, **more})


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
@pytest.mark.skipif(
    not any(regular.is_file() for regular, _ in candidates()), reason="no Unicode font installed"
)
def test_names_beyond_latin_1_are_printed(tmp_path: Path) -> None:
    incident = make_incident(3, 1010.0, camera="plac-północ", rule="kask-wymagany")
    data = ReportData(
        site="Werk Łódź Ωmega",
        timezone="Europe/Warsaw",
        filters=["camera: plac-północ"],
        generated_by="żaneta",
        generated_at=1000.0,
        total=1,
        incidents=[incident],
        by={"camera": [("plac-północ", 1)]},
    )
    text = pdf_text(data, tmp_path)
    assert "Incident report: Werk Łódź Ωmega" in text
    assert "by żaneta" in text and "plac-północ" in text


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
@pytest.mark.skipif(
    not any(path.is_file() for path in fallback_files()),
    reason="no CJK fallback font installed (Debian: fonts-droid-fallback)",
)
def test_chinese_japanese_and_korean_text_is_printed(tmp_path: Path) -> None:
    """DejaVu has no CJK glyphs, and the report printed a Shanghai site's name and its Chinese,
    Japanese or Korean rule messages as boxes; those runs are now set in a fallback font."""
    incident = make_incident(3, 1010.0, camera="yard", rule="hardhat")
    incident = replace(incident, message="未戴安全帽 & ヘルメット未着用 <안전모 미착용>")
    data = ReportData(
        site="上海工厂 (Werk Łódź)",
        timezone="Asia/Shanghai",
        filters=["camera: yard"],
        generated_by="王伟",
        generated_at=1000.0,
        total=1,
        incidents=[incident],
        by={"camera": [("yard", 1)]},
    )
    text = " ".join(pdf_text(data, tmp_path).split())  # the table cell wraps the message
    assert "Incident report: 上海工厂 (Werk Łódź)" in text
    assert "by 王伟" in text
    assert "未戴安全帽 & ヘルメット未着用 <안전모 미착용>" in text


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_a_long_period_is_charted_in_weeks_labelled_by_their_monday(tmp_path: Path) -> None:
    """A period too long for a bar a day is drawn in weeks (or months, years): the chart says
    which, and a label carries its year (the periods span years)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from safewatch.storage import Bucket

    zone = ZoneInfo("Europe/Berlin")
    monday = datetime(2024, 1, 8, tzinfo=zone).timestamp()
    data = ReportData(
        site="Yard",
        timezone="Europe/Berlin",
        filters=[],
        generated_by="operator",
        generated_at=monday,
        total=3,
        incidents=[],
        by_day=[Bucket(count=3, start=monday), Bucket(count=0, start=monday + 7 * 86400)],
        by_day_unit="week",
    )
    text = pdf_text(data, tmp_path)
    assert "Incidents per week" in text and "2024-01-08" in text


def _jpeg() -> bytes:
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".jpg", np.full((72, 128, 3), 90, np.uint8))
    assert ok
    return bytes(encoded)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_stills_are_said_to_hide_heads_only_where_their_camera_does(tmp_path: Path) -> None:
    """The heading read "Evidence stills (heads hidden)" even with privacy.mode off."""
    yard = make_incident(3, 1010.0, camera="yard", rule="hardhat")
    dock = make_incident(4, 1020.0, camera="dock", rule="hardhat")
    data = yard_report([yard, dock], stills=[ReportStill(yard, _jpeg(), heads_hidden=False)])
    text = pdf_text(data, tmp_path)
    assert "Evidence stills (heads not hidden: privacy is off)" in text
    assert "heads hidden" not in text

    both = replace(data, stills=[*data.stills, ReportStill(dock, _jpeg())])
    text = " ".join(pdf_text(both, tmp_path).split())
    assert "Evidence stills " in text and "(heads" not in text
    assert "[heads not hidden] " in text and "[heads hidden] " in text

    hidden = replace(data, stills=[ReportStill(dock, _jpeg())])
    assert "Evidence stills (heads hidden)" in pdf_text(hidden, tmp_path)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_table_cells_stay_inside_their_columns(tmp_path: Path) -> None:
    """Cells were plain strings that never wrap: the start time ran into Camera on every row and
    a rule id such as one-person-at-hoist-landing printed over Severity. Read back with
    ``pdftotext -bbox``: no word of a row reaches the next column's heading."""
    import re

    incident = make_incident(
        3, 1010.0, camera="north-gate-loading-bay-7", rule="one-person-at-hoist-landing"
    )
    incident = replace(incident, status=IncidentStatus.FALSE_POSITIVE)
    data = yard_report([incident])
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_incident_report(data))
    page = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    words = [
        (float(x0), float(y0), float(x1), html.unescape(text))
        for x0, y0, x1, text in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>',
            page,
        )
    ]
    names = ["Started", "Camera", "Rule", "Severity", "Status", "Dur."]
    header_y = next(y for x0, y, x1, text in words if text == "Started")
    heads = sorted(
        (x0, text) for x0, y, x1, text in words if abs(y - header_y) < 1 and text in names
    )
    assert [text for _, text in heads] == names
    row = [w for w in words if w[1] > header_y + 1 and w[0] < heads[-1][0]]
    assert row, page
    for x0, _, x1, text in row:
        column = max(i for i, (start, _) in enumerate(heads) if start <= x0 + 0.5)
        assert x1 < heads[column + 1][0], (text, heads[column][1])
    rule = "".join(text for x0, _, _, text in row if heads[2][0] <= x0 < heads[3][0])
    assert rule == "one-person-at-hoist-landing"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_an_unreviewed_incident_is_worded_as_the_dashboard_words_it(tmp_path: Path) -> None:
    """The Status column printed "open" where the dashboard says "not reviewed" ("open" read as
    the episode still running)."""
    waiting = make_incident(3, 1010.0, camera="yard", rule="hardhat")
    closed = replace(make_incident(4, 1020.0, camera="yard"), status=IncidentStatus.RESOLVED)
    data = yard_report([waiting, closed], by={"status": [("open", 1), ("resolved", 1)]})
    text = " ".join(pdf_text(data, tmp_path).split())
    assert "Status not reviewed: 1, resolved: 1" in text
    table = text.split("Message", 1)[1]
    assert table.count("not reviewed") == 1 and " open " not in f" {table} "


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_the_widest_status_stays_on_one_line(tmp_path: Path) -> None:
    """A 22 mm Status column broke "acknowledged" (the status of every reviewed incident still
    open) into "acknowledge" / "d" in the DejaVu font the report prefers."""
    seen = replace(make_incident(3, 1010.0, camera="yard"), status=IncidentStatus.ACKNOWLEDGED)
    data = yard_report([seen])
    table = pdf_text(data, tmp_path).split("Message", 1)[1]
    assert "acknowledged" in table.split(), table
