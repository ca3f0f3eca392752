"""The report's fonts: a Unicode TrueType font when one is installed, else Helvetica.

ReportLab's built-in Helvetica knows Latin-1 only, so a site named "Werk Łódź" printed as
"Werk ■ód■". A TrueType font is embedded in the PDF instead. None is shipped with safewatch (a
font file is large); the first of these that exists is used:

* DejaVu Sans from Debian's ``fonts-dejavu-core`` (on most Debian machines, CI's included);
* Liberation Sans from Debian's ``fonts-liberation``;
* DejaVu Sans inside matplotlib (installed with ``supervision``, a dependency of safewatch).

They cover Latin, Greek and Cyrillic, not Chinese, Japanese or Korean. A site in Shanghai names
its site and writes its rule messages in Chinese, which printed as boxes. ReportLab does not fall
back from font to font by itself, so :func:`markup` sets each run of characters the main font
lacks in the first installed fallback font that has them (:func:`fallback_files`: Debian's
``fonts-droid-fallback``, which covers Chinese, Japanese and Korean, or WenQuanYi); fonts are
embedded (subset), so the PDF reads the same on every viewer. A character no font has stays a box.
Without any Unicode font the report falls back to Helvetica and says so once in the log.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

__all__ = ["ReportFonts", "candidates", "fallback_files", "markup", "report_fonts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReportFonts:
    """Font names to give ReportLab for plain and bold text."""

    regular: str
    bold: str
    covers: frozenset[int] = frozenset(range(32, 256))
    """Code points the regular font draws (Helvetica: Latin-1)."""


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
            font = TTFont("SafewatchSans", str(regular))
            pdfmetrics.registerFont(font)
            pdfmetrics.registerFont(TTFont("SafewatchSans-Bold", str(bold)))
        except (TTFError, OSError) as exc:
            log.warning("report font %s is unusable: %s", regular, exc)
            continue
        return ReportFonts("SafewatchSans", "SafewatchSans-Bold", _code_points(font))
    log.warning(
        "no Unicode font found for PDF reports (install fonts-dejavu-core); text beyond "
        "Latin-1 prints as boxes"
    )
    return HELVETICA


def fallback_files() -> list[Path]:
    """Fonts for what the main font lacks, in order of preference (Chinese, Japanese, Korean).

    Droid Sans Fallback's smaller file has Hangul, which its "Full" file lacks.
    """
    return [
        Path("/usr/share/fonts-droid-fallback/truetype/DroidSansFallback.ttf"),
        Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
        Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
        Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    ]


def _code_points(font: TTFont) -> frozenset[int]:
    return frozenset(font.face.charToGlyph)


@functools.cache
def _fallbacks() -> tuple[tuple[str, frozenset[int]], ...]:
    """Register the installed fallback fonts (once per process, only when a report needs one:
    parsing a CJK font takes a moment) and return each one's name and code points."""
    found: list[tuple[str, frozenset[int]]] = []
    for index, path in enumerate(fallback_files()):
        if not path.is_file():
            continue
        name = f"SafewatchFallback{index}"
        try:
            font = TTFont(name, str(path))  # a .ttc: its first face
            pdfmetrics.registerFont(font)
        except (TTFError, OSError) as exc:
            log.warning("report fallback font %s is unusable: %s", path, exc)
            continue
        found.append((name, _code_points(font)))
    if not found:
        log.warning(
            "no fallback font for PDF reports (install fonts-droid-fallback): Chinese, Japanese "
            "and Korean text prints as boxes"
        )
    return tuple(found)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markup(text: str) -> str:
    """``text`` escaped for a ReportLab paragraph, runs the main font cannot draw set in a
    fallback font that can (module docstring)."""
    covers = report_fonts().covers
    if all(ord(char) in covers or char.isspace() for char in text):
        return _escape(text)
    runs: list[tuple[str | None, str]] = []
    for char in text:
        font: str | None = None
        if ord(char) not in covers and not char.isspace():
            font = next((name for name, has in _fallbacks() if ord(char) in has), None)
        if runs and runs[-1][0] == font:
            runs[-1] = (font, runs[-1][1] + char)
        else:
            runs.append((font, char))
    return "".join(
        _escape(run) if font is None else f'<font name="{font}">{_escape(run)}</font>'
        for font, run in runs
    )
