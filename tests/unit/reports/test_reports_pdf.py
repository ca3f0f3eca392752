"""The PDF report prints text beyond Latin-1 where a Unicode font is installed.

Before, every text was set in ReportLab's Helvetica, which knows Latin-1 only: a site named
"Werk Łódź" came out as "Werk ■ód■" (read back with ``pdftotext``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from incident_factories import make_incident
from safewatch.reports import ReportData, render_incident_report
from safewatch.reports.fonts import candidates


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
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_incident_report(data))
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Incident report: Werk Łódź Ωmega" in text
    assert "by żaneta" in text and "plac-północ" in text
