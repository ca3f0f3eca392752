"""The PDF report prints text beyond Latin-1 where a Unicode font is installed.

Before, every text was set in ReportLab's Helvetica, which knows Latin-1 only: a site named
"Werk Łódź" came out as "Werk ■ód■" (read back with ``pdftotext``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from incident_factories import make_incident
from safewatch.reports import ReportData, render_incident_report
from safewatch.reports.fonts import candidates, fallback_files


def pdf_text(data: ReportData, tmp_path: Path) -> str:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_incident_report(data))
    return subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


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
