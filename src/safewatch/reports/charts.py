"""Vector charts for reports (ReportLab graphics): bars per category and counts over time."""

from __future__ import annotations

from collections.abc import Sequence

from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors

from safewatch.reports.fonts import report_fonts

__all__ = ["category_bars", "time_bars"]

INK = colors.HexColor("#1f2933")
BAR = colors.HexColor("#d9822b")
GRID = colors.HexColor("#cbd2d9")


def _empty(width: float, height: float, title: str) -> Drawing:
    drawing = Drawing(width, height)
    drawing.add(
        String(4, height - 12, title, fontName=report_fonts().bold, fontSize=9, fillColor=INK)
    )
    drawing.add(
        String(
            width / 2,
            height / 2,
            "no incidents",
            textAnchor="middle",
            fontName=report_fonts().regular,
            fontSize=8,
        )
    )
    return drawing


def _step(top: float) -> float:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if top / step <= 6:
            return step
    return float(max(1, int(top) // 6))


def category_bars(
    title: str, items: Sequence[tuple[str, int]], width: float = 250, height: float = 150
) -> Drawing:
    """Horizontal bars, largest first (at most 10; the rest summed as "other")."""
    if not items:
        return _empty(width, height, title)
    ranked = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) > 10:
        ranked = [*ranked[:9], ("other", sum(v for _, v in ranked[9:]))]
    ranked.reverse()
    drawing = Drawing(width, height)
    chart = HorizontalBarChart()
    chart.x, chart.y = 90, 14
    chart.width, chart.height = int(width - 100), int(height - 34)
    chart.data = [[v for _, v in ranked]]
    chart.categoryAxis.categoryNames = [k[:18] for k, _ in ranked]
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.fontName = report_fonts().regular  # camera and rule names
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.valueAxis.valueMin = 0
    top = int(max(v for _, v in ranked))
    chart.valueAxis.valueMax = max(1, top)
    chart.valueAxis.valueStep = _step(top)
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = GRID
    chart.bars[0].fillColor = BAR
    chart.bars[0].strokeColor = None
    drawing.add(chart)
    drawing.add(
        String(4, height - 12, title, fontName=report_fonts().bold, fontSize=9, fillColor=INK)
    )
    return drawing


def time_bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[int],
    width: float = 510,
    height: float = 160,
) -> Drawing:
    """Vertical bars over time (labels thinned to stay legible)."""
    if not values or not any(values):
        return _empty(width, height, title)
    drawing = Drawing(width, height)
    chart = VerticalBarChart()
    chart.x, chart.y = 30, 26
    chart.width, chart.height = int(width - 40), int(height - 46)
    chart.data = [list(values)]
    every = max(1, len(labels) // 12)
    chart.categoryAxis.categoryNames = [
        label if index % every == 0 else "" for index, label in enumerate(labels)
    ]
    chart.categoryAxis.labels.fontSize = 6
    chart.categoryAxis.labels.angle = 30
    chart.categoryAxis.labels.boxAnchor = "ne"
    top = int(max(values))
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = max(1, top)
    chart.valueAxis.valueStep = _step(top)
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = GRID
    chart.bars[0].fillColor = BAR
    chart.bars[0].strokeColor = None
    chart.barSpacing = 1
    drawing.add(chart)
    drawing.add(
        String(4, height - 12, title, fontName=report_fonts().bold, fontSize=9, fillColor=INK)
    )
    return drawing
