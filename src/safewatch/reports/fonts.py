"""The report's fonts: a Unicode TrueType font when one is installed, else Helvetica.

ReportLab's built-in Helvetica knows Latin-1 only, so a site named "Werk Łódź" printed as
"Werk ■ód■". A TrueType font is embedded in the PDF instead. None is shipped with safewatch (a
font file is large); the first of these that exists is used:

* DejaVu Sans from Debian's ``fonts-dejavu-core`` (on most Debian machines, CI's included);
* Liberation Sans from Debian's ``fonts-liberation``;
* DejaVu Sans inside matplotlib (installed with ``supervision``, a dependency of safewatch).

They cover Latin, Greek and Cyrillic, not Chinese, Japanese or Korean, which stay unprintable.
Without any of them the report falls back to Helvetica and says so once in the log.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

__all__ = ["ReportFonts", "candidates", "report_fonts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReportFonts:
    """Font names to give ReportLab for plain and bold text."""

    regular: str
    bold: str


HELVETICA = ReportFonts("Helvetica", "Helvetica-Bold")


def candidates() -> list[tuple[Path, Path]]:
    """(regular, bold) font files to try, in order of preference."""
    found = [
        (
            Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
            Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
        ),
        (
            Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
            Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
        ),
    ]
    spec = importlib.util.find_spec("matplotlib")  # located, not imported (slow to import)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"
        found.append((folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"))
    return found


@functools.cache
def report_fonts() -> ReportFonts:
    """Register the first usable Unicode font (once per process) and return its names."""
    for regular, bold in candidates():
        if not (regular.is_file() and bold.is_file()):
            continue
        try:
            pdfmetrics.registerFont(TTFont("SafewatchSans", str(regular)))
            pdfmetrics.registerFont(TTFont("SafewatchSans-Bold", str(bold)))
        except (TTFError, OSError) as exc:
            log.warning("report font %s is unusable: %s", regular, exc)
            continue
        return ReportFonts("SafewatchSans", "SafewatchSans-Bold")
    log.warning(
        "no Unicode font found for PDF reports (install fonts-dejavu-core); text beyond "
        "Latin-1 prints as boxes"
    )
    return HELVETICA
