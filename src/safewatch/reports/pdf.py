"""The incident report PDF: what was filtered, totals, charts, the incidents, evidence stills.

The data is gathered by the caller (the API route, from the same filter as the incident list and
the same SQL aggregates as the analytics page), so this module only lays it out and never touches
the database: it can be tested with hand-made data and checked with ``pdftotext``.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from safewatch.config.secrets import redact_secrets
from safewatch.domain import Incident
from safewatch.reports.charts import category_bars, time_bars
from safewatch.reports.fonts import markup, report_fonts
from safewatch.storage import Bucket

__all__ = ["ReportData", "ReportStill", "heads_note", "render_incident_report"]


@dataclass(frozen=True, slots=True)
class ReportStill:
    """An evidence still to print, with the incident it belongs to.

    Attributes:
        incident: The incident.
        jpeg: The still.
        heads_hidden: Whether its camera hides heads (``privacy.mode`` of the site or that
            camera is not ``off``); the report says so only where it is true.
    """

    incident: Incident
    jpeg: bytes
    heads_hidden: bool = True


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything a report shows.

    Attributes:
        site: Site name.
        timezone: IANA zone for the times printed.
        filters: Human lines describing the filter (``camera: yard``).
        generated_by: User who exported it.
        generated_at: Epoch seconds.
        total: Incidents matching.
        incidents: The incidents listed (newest first; may be fewer than ``total``).
        by_day: Counts per local day, or per week, month or year (``by_day_unit``) for a
            period too long to draw day by day.
        by_day_unit: What a ``by_day`` bar counts: ``day``, ``week``, ``month`` or ``year``.
        by_hour: Counts per local hour of day (0-23), summed over the period.
        by: Dimension name (camera, rule, kind, severity, status) to ``(value, count)``.
        stills: Evidence stills to print.
    """

    site: str
    timezone: str
    filters: Sequence[str]
    generated_by: str
    generated_at: float
    total: int
    incidents: Sequence[Incident]
    by_day: Sequence[Bucket] = ()
    by_day_unit: str = "day"
    by_hour: Sequence[int] = ()
    by: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    stills: Sequence[ReportStill] = ()


_BAR_LABELS = {"day": "%m-%d", "week": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}
"""How a bar of the chart over time is labelled, by its unit (a week by its Monday)."""


def _status(status: str) -> str:
    """A review status as the dashboard words it (``STATUS_LABEL`` in api.js): "open" read as
    the episode still running, so an incident nobody reviewed is "not reviewed"."""
    return "not reviewed" if status == "open" else status.replace("_", " ")


def _when(seconds: float | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if seconds is None:
        return "open"
    return datetime.fromtimestamp(seconds, UTC).astimezone(zone).strftime(fmt)


def _table(rows: list[list[object]], widths: list[float], header: bool = True) -> Table:
    fonts = report_fonts()
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style = [
        ("FONT", (0, 0), (-1, -1), fonts.regular, 7.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cbd2d9")),
    ]
    if header:
        style += [
            ("FONT", (0, 0), (-1, 0), fonts.bold, 7.5),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e4e7eb")),
        ]
    table.setStyle(TableStyle(style))  # type: ignore[arg-type]
    return table


def render_incident_report(data: ReportData, *, max_rows: int = 500) -> bytes:
    """The report as PDF bytes (A4)."""
    zone = ZoneInfo(data.timezone)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title=f"safewatch incident report - {data.site}",
        author=f"safewatch ({data.generated_by})",
    )
    styles = getSampleStyleSheet()
    fonts = report_fonts()  # a Unicode font where one is installed: site names, messages
    for name in ("Normal", "Title", "Heading2"):
        bold = styles[name].fontName.endswith("-Bold")
        styles[name].fontName = fonts.bold if bold else fonts.regular
    small = ParagraphStyle("small", parent=styles["Normal"], fontSize=8, leading=10)
    # Table cells in the table's font; a plain string never wraps and ran into the next column
    # (a rule id such as one-person-at-hoist-landing printed over Severity): ids are wrapped,
    # an id longer than its column is split.
    cell = ParagraphStyle("cell", small, fontSize=7.5, leading=9, splitLongWords=True)
    story: list[Flowable] = [
        Paragraph(f"Incident report: {_escape(data.site)}", styles["Title"]),
        Paragraph(
            f"Generated {_when(data.generated_at, zone)} ({data.timezone}) by "
            f"{_escape(data.generated_by)}. Filter: "
            f"{_escape('; '.join(data.filters) or 'all incidents')}.",
            small,
        ),
        Spacer(1, 4 * mm),
        Paragraph(f"Total incidents: {data.total}", styles["Heading2"]),
    ]
    summary: list[list[object]] = [
        [
            name.capitalize(),
            ", ".join(f"{_status(k) if name == 'status' else k}: {v}" for k, v in items) or "-",
        ]
        for name, items in data.by.items()
    ]
    if summary:
        story.append(_table(summary, [25 * mm, 155 * mm], header=False))
    story.append(Spacer(1, 3 * mm))
    label = _BAR_LABELS.get(data.by_day_unit, "%Y-%m-%d")
    day_labels = [_when(b.start, zone, label) for b in data.by_day]
    story.append(
        time_bars(f"Incidents per {data.by_day_unit}", day_labels, [b.count for b in data.by_day])
    )
    charts = [
        time_bars(
            "By hour of day",
            [f"{h:02d}" for h in range(24)],
            list(data.by_hour) or [0] * 24,
            width=250,
            height=150,
        )
    ]
    for name in ("camera", "rule", "kind", "severity"):
        if name in data.by:
            charts.append(category_bars(f"By {name}", data.by[name]))
    grid: list[list[object]] = [list(charts[i : i + 2]) for i in range(0, len(charts), 2)]
    if grid and len(grid[-1]) == 1:
        grid[-1].append("")
    story.append(Table(grid, colWidths=[90 * mm, 90 * mm]))
    story.append(Paragraph("Incidents", styles["Heading2"]))
    rows: list[list[object]] = [
        ["Started", "Camera", "Rule", "Severity", "Status", "Dur. s", "Message"]
    ]
    for incident in list(data.incidents)[:max_rows]:
        rows.append(
            [
                _when(incident.started_at, zone, "%Y-%m-%d %H:%M:%S"),
                Paragraph(_escape(incident.camera_id), cell),
                Paragraph(_escape(incident.rule_id), cell),
                str(incident.severity),
                Paragraph(_escape(_status(str(incident.status))), cell),
                "" if incident.duration is None else f"{incident.duration:.1f}",
                Paragraph(_escape(incident.message), small),
            ]
        )
    # Started fits "2025-06-15 12:34:56" (28.1 mm at 7.5 pt) and the cell padding (2 x 6 pt),
    # Status its widest label, "acknowledged" (19.1 mm in DejaVu 7.5 pt), on one line.
    story.append(_table(rows, [33 * mm, 20 * mm, 30 * mm, 14 * mm, 24 * mm, 11 * mm, 48 * mm]))
    if data.total > len(rows) - 1:
        story.append(
            Paragraph(f"... and {data.total - (len(rows) - 1)} more incidents not listed.", small)
        )
    if data.stills:
        # "heads hidden" was printed over stills of cameras whose privacy mode is off: said in
        # the heading when true of every still, else beside each still.
        hidden = {still.heads_hidden for still in data.stills}
        note = heads_note(hidden)
        title = f"Evidence stills ({note})" if note else "Evidence stills"
        story.append(Paragraph(title, styles["Heading2"]))
        for still in data.stills:
            incident = still.incident
            label = ""
            if len(hidden) > 1:
                label = "[heads hidden] " if still.heads_hidden else "[heads not hidden] "
            image = Image(io.BytesIO(still.jpeg))
            scale = min(180 * mm / image.imageWidth, 95 * mm / image.imageHeight)
            image.drawWidth = image.imageWidth * scale
            image.drawHeight = image.imageHeight * scale
            caption = (
                f"{label}{_when(incident.started_at, zone)} - {incident.camera_id} - "
                f"{incident.rule_id} ({incident.severity}): {_escape(incident.message)} "
                f"[{incident.id}]"
            )
            story.append(KeepTogether([image, Paragraph(caption, small), Spacer(1, 3 * mm)]))
    doc.build(story)
    return buffer.getvalue()


def heads_note(hidden: Collection[bool]) -> str | None:
    """What stills say about heads, given whether each still's camera hides them: one wording for
    the PDF and the Reports page, which said "heads hidden" even with privacy off. ``None`` for a
    mix (the PDF then labels each still)."""
    return {
        frozenset({True}): "heads hidden",
        frozenset({False}): "heads not hidden: privacy is off",
    }.get(frozenset(hidden))


def _escape(text: str) -> str:
    """Free text made safe for a paragraph: configured secrets masked, markup escaped, and
    characters the report's font lacks (Chinese, Japanese, Korean) set in a fallback font."""
    return markup(redact_secrets(text))
