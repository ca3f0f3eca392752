"""What a backtest's console table and ``backtest.json`` say about the reviewed incidents.

Before, the console's score table had no "false avoided" column and neither output said how many
reviewed incidents were scored: a change that avoided every reviewed false alarm and raised no
reviewed incident showed "-" for precision and recall and nothing else.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from incident_factories import make_incident
from safewatch.domain import Incident
from safewatch.domain.incidents import IncidentStatus
from safewatch.footage.audit_integrity import VideoReading
from safewatch.footage.backtest import BacktestRun, SetResult
from safewatch.footage.backtest_report import build_document, print_table

VIDEO = Path("clip.mp4")


def reviewed(track: int, start: float, end: float, status: IncidentStatus) -> Incident:
    return replace(make_incident(track, end, started_at=start), status=status)


def run_of(
    sets: dict[str, list[Incident]], span: tuple[float, float] = (990.0, 1100.0)
) -> BacktestRun:
    return BacktestRun(
        "cam-1",
        list(sets),
        results={VIDEO: [SetResult(name, tuple(found)) for name, found in sets.items()]},
        spans={VIDEO: span},
        frames={VIDEO: 100},
        cached={VIDEO: True},
        detect_seconds={VIDEO: 0.0},
        elapsed={VIDEO: 0.1},
        readings={VIDEO: VideoReading(VIDEO, "argument", 1.0, 0, 0, 100)},
    )


def test_a_change_that_avoids_every_false_alarm_shows_it_and_the_reviewed_count() -> None:
    false = reviewed(90, 1000.0, 1010.0, IncidentStatus.FALSE_POSITIVE)
    raised = make_incident(1, 1010.0, started_at=1000.0)
    run = run_of({"baseline": [raised], "proposal": []})
    document = build_document(run, {"baseline": Path("a"), "proposal": Path("b")}, [false])
    scores = document["reviewed"]
    assert scores["proposal"]["reviewed"] == scores["baseline"]["reviewed"] == 1
    console = Console(record=True, width=200)
    print_table(document, console)
    text = console.export_text()
    assert "false avoided" in text and "reviewed" in text
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in text.splitlines()]
    assert ["proposal", "-", "-", "0", "0", "0", "1", "1"] in rows
