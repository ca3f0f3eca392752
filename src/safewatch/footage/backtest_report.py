"""A backtest's outputs: ``backtest.json``, ``backtest.html`` and the console table.

One document is built (:func:`build_document`) and everything else renders it, so the JSON, the
page and the table cannot disagree. Evidence stills are referenced relative to the output folder,
so the folder can be moved or zipped and the page still shows them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from rich.console import Console
from rich.table import Table

from safewatch import __version__
from safewatch.domain import Incident
from safewatch.footage.audit_report import (
    footage_fields,
    footage_warnings,
    incident_fields,
    iso_time,
)
from safewatch.footage.backtest import BacktestRun, uncovered
from safewatch.footage.backtest_diff import DiffKind, compare, score

__all__ = ["build_document", "print_table", "write_outputs"]


def _record(incident: Incident, folder: str, origin: float) -> dict[str, Any]:
    return incident_fields(incident, origin, f"{folder}/evidence")


def _reviewed_record(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "rule": incident.rule_id,
        "status": str(incident.status),
        "started_at": iso_time(incident.started_at),
        "ended_at": iso_time(incident.ended_at),
    }


def build_document(
    run: BacktestRun, sources: Mapping[str, Path], reviewed: Sequence[Incident] | None
) -> dict[str, Any]:
    """Everything the backtest found, compared and scored, as JSON-ready data.

    Args:
        run: The backtest's results.
        sources: Each rule set's folder or file, by set name.
        reviewed: Reviewed live incidents of the camera over the footage's time range, or
            ``None`` when the site database was not consulted.
    """
    baseline_name, *proposal_names = run.sets
    footage = []
    comparisons: dict[str, list[dict[str, Any]]] = {name: [] for name in proposal_names}
    totals: dict[str, Counter[tuple[str, str]]] = {name: Counter() for name in proposal_names}
    all_incidents: dict[str, list[Incident]] = {name: [] for name in run.sets}
    for index, (video, results) in enumerate(run.results.items()):
        start, end = run.spans[video]
        origin = start
        folder = f"{index:02d}-{video.stem}"
        by_set = {r.name: r.incidents for r in results}
        for name, incidents in by_set.items():
            all_incidents[name].extend(incidents)
        footage.append(
            {
                "path": str(video),
                "frames_analysed": run.frames[video],
                "from": iso_time(start),
                "to": iso_time(end),
                "gaps": [
                    [iso_time(before[1]), iso_time(after[0])]
                    for before, after in pairwise(run.covered.get(video, [(start, end)]))
                ],
                **footage_fields(run.readings[video]),
                "detections": "cache" if run.cached[video] else "detector",
                "detect_seconds": round(run.detect_seconds[video], 3),
                "seconds": round(run.elapsed[video], 3),
                "incidents": {
                    name: [_record(i, f"{name}/{folder}", origin) for i in incidents]
                    for name, incidents in by_set.items()
                },
            }
        )
        for name in proposal_names:
            for difference in compare(by_set[baseline_name], by_set[name]):
                totals[name][(difference.rule_id, str(difference.kind))] += 1
                if difference.kind is DiffKind.UNCHANGED:
                    continue
                comparisons[name].append(
                    {
                        "video": str(video),
                        "change": str(difference.kind),
                        "rule": difference.rule_id,
                        baseline_name: None
                        if difference.baseline is None
                        else _record(difference.baseline, f"{baseline_name}/{folder}", origin),
                        name: None
                        if difference.proposal is None
                        else _record(difference.proposal, f"{name}/{folder}", origin),
                    }
                )
    summary = {
        name: [
            {
                "rule": rule,
                **{kind.value: totals[name][(rule, kind.value)] for kind in DiffKind},
            }
            for rule in sorted({rule for rule, _ in totals[name]})
        ]
        for name in proposal_names
    }
    scores = None
    excluded: list[tuple[Incident, str]] | None = None
    if reviewed is not None:
        # Only what the footage's frames cover is scored: one in a hole of the footage (an
        # export's outage, an undecodable stretch) was "missed" by every rule set.
        excluded = uncovered(run, reviewed)
        skipped = {incident.id for incident, _ in excluded}
        reviewed = [incident for incident in reviewed if incident.id not in skipped]
        scores = {}
        for name in run.sets:
            result = score(all_incidents[name], reviewed)
            scores[name] = {
                "precision": result.precision,
                "recall": result.recall,
                "reviewed": result.reviewed,
                "real_raised": [_reviewed_record(i) for i in result.real_raised],
                "real_missed": [_reviewed_record(i) for i in result.real_missed],
                "false_raised": [_reviewed_record(i) for i in result.false_raised],
                "false_avoided": [_reviewed_record(i) for i in result.false_avoided],
            }
    return {
        "safewatch": __version__,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "camera": run.camera_id,
        "baseline": baseline_name,
        "rule_sets": {name: str(sources[name]) for name in run.sets},
        "footage": footage,
        "summary": summary,
        "differences": comparisons,
        "reviewed": scores,
        "reviewed_excluded": None
        if excluded is None
        else [{**_reviewed_record(i), "reason": why} for i, why in excluded],
        "warnings": footage_warnings([run.readings[video] for video in run.results])
        + _excluded_warnings(excluded or []),
    }


def _excluded_warnings(excluded: Sequence[tuple[Incident, str]]) -> list[str]:
    """One line saying which reviewed incidents were not scored, and why (at most 5 named)."""
    if not excluded:
        return []
    named = "; ".join(f"{i.id} ({why})" for i, why in excluded[:5])
    more = f"; and {len(excluded) - 5} more" if len(excluded) > 5 else ""
    return [
        f"note: {len(excluded)} reviewed incident(s) not scored, the footage has no frame "
        f"where they happened: {named}{more}"
    ]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Backtest: {{ doc.camera }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24;max-width:1200px}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #c9d1d9;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f4}
.warning{color:#8a4b00}.only_baseline{background:#fff1f0}.only_proposal{background:#eefbf0}.changed{background:#fff8e6}
img{max-width:320px;display:block}
</style></head><body>
<h1>Backtest of camera {{ doc.camera }}</h1>
<p>Baseline <code>{{ doc.rule_sets[doc.baseline] }}</code>; generated {{ doc.generated_at }}
by safewatch {{ doc.safewatch }}.</p>
<h2>Footage</h2>
<table><tr><th>file</th><th>from</th><th>to</th><th>clock</th><th>frames</th><th>read</th>
<th>detections</th></tr>
{% for f in doc.footage %}<tr><td>{{ f.path }}</td><td>{{ f.from }}</td><td>{{ f.to }}</td>
<td>{{ f.clock }}</td><td>{{ f.frames_analysed }}</td>
<td>{{ "?" if f.coverage is none else "%.1f %%"|format(100 * f.coverage) }}</td>
<td>{{ f.detections }}</td></tr>{% endfor %}</table>
{% for line in doc.warnings %}<p class="warning">{{ line }}</p>{% endfor %}
{% for name, rows in doc.summary.items() %}
<h2>{{ name }} (<code>{{ doc.rule_sets[name] }}</code>) against {{ doc.baseline }}</h2>
<table><tr><th>rule</th><th>unchanged</th><th>changed</th><th>only in {{ doc.baseline }}</th>
<th>only in {{ name }}</th></tr>
{% for r in rows %}<tr><td>{{ r.rule }}</td><td>{{ r.unchanged }}</td><td>{{ r.changed }}</td>
<td>{{ r.only_baseline }}</td><td>{{ r.only_proposal }}</td></tr>{% endfor %}</table>
{% if doc.differences[name] %}
<table><tr><th>change</th><th>rule</th><th>{{ doc.baseline }}</th><th>{{ name }}</th></tr>
{% for d in doc.differences[name] %}<tr class="{{ d.change }}"><td>{{ d.change }}</td>
<td>{{ d.rule }}</td>
{% for side in [d[doc.baseline], d[name]] %}<td>{% if side %}{{ side.start_offset_s }} s to
{{ side.end_offset_s }} s ({{ side.duration_s }} s), tracks {{ side.track_ids|join(", ") }}
{% if side.still %}<a href="{{ side.still }}"><img src="{{ side.still }}" alt="still of
{{ side.rule }} at {{ side.start_offset_s }} s"></a>{% endif %}{% else %}-{% endif %}</td>
{% endfor %}</tr>{% endfor %}</table>
{% else %}<p>No incident changes.</p>{% endif %}
{% endfor %}
{% if doc.reviewed is not none %}<h2>Against reviewed incidents</h2>
<table><tr><th>rule set</th><th>precision</th><th>recall</th><th>real raised</th>
<th>real missed</th><th>false raised</th><th>false avoided</th><th>reviewed</th></tr>
{% for name, s in doc.reviewed.items() %}<tr><td>{{ name }}</td>
<td>{{ "-" if s.precision is none else "%.2f"|format(s.precision) }}</td>
<td>{{ "-" if s.recall is none else "%.2f"|format(s.recall) }}</td>
<td>{{ s.real_raised|length }}</td><td>{{ s.real_missed|length }}</td>
<td>{{ s.false_raised|length }}</td><td>{{ s.false_avoided|length }}</td>
<td>{{ s.reviewed }}</td></tr>{% endfor %}
</table>{% endif %}
</body></html>
"""


def write_outputs(document: Mapping[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``backtest.json`` and ``backtest.html`` into ``folder``."""
    json_path = folder / "backtest.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    page = Environment(autoescape=select_autoescape(default=True)).from_string(_PAGE)
    html_path = folder / "backtest.html"
    html_path.write_text(page.render(doc=document))
    return json_path, html_path


def print_table(document: Mapping[str, Any], console: Console) -> None:
    """Per proposal and rule: unchanged, changed, removed and added incidents; then scores;
    then what the footage lacked (partly decoded, made-up times: :func:`footage_warnings`)."""
    baseline = document["baseline"]
    for name, rows in document["summary"].items():
        table = Table(
            "rule",
            "unchanged",
            "changed",
            f"only {baseline}",
            f"only {name}",
            title=f"{name} vs {baseline}",
        )
        for row in rows:
            table.add_row(
                row["rule"],
                str(row["unchanged"]),
                str(row["changed"]),
                str(row["only_baseline"]),
                str(row["only_proposal"]),
            )
        console.print(table if rows else f"{name} vs {baseline}: no incidents in either")
    if not document["summary"]:
        count = sum(len(f["incidents"][baseline]) for f in document["footage"])
        console.print(f"{baseline}: {count} incidents")
    reviewed = document["reviewed"]
    if reviewed is not None:
        table = Table(
            "rule set",
            "precision",
            "recall",
            "real raised",
            "real missed",
            "false raised",
            "false avoided",
            "reviewed",
            title="Against reviewed incidents",
        )
        # Every column, so a change that avoids every reviewed false alarm and raises nothing
        # reviewed (precision and recall both "-") still shows what it avoided, out of how many.
        for name, s in reviewed.items():
            table.add_row(
                name,
                "-" if s["precision"] is None else f"{s['precision']:.2f}",
                "-" if s["recall"] is None else f"{s['recall']:.2f}",
                str(len(s["real_raised"])),
                str(len(s["real_missed"])),
                str(len(s["false_raised"])),
                str(len(s["false_avoided"])),
                str(s["reviewed"]),
            )
        console.print(table)
    for line in document["warnings"]:
        console.print(line, highlight=False)
