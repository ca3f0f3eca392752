"""The audit's outputs: ``incidents.json`` and the summary table."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.table import Table

from safewatch import __version__
from safewatch.config.loader import LoadedSite
from safewatch.domain import Incident
from safewatch.footage.audit_integrity import FULL, RESULT
from safewatch.rules import RuleSet
from safewatch.storage.atomic import atomic_write

if TYPE_CHECKING:
    from pathlib import Path

    from safewatch.footage.audit import AuditReport, VideoResult

__all__ = [
    "FootageRead",
    "footage_fields",
    "footage_warnings",
    "incident_fields",
    "incident_record",
    "incomplete_videos",
    "iso_time",
    "print_summary",
    "write_incidents_json",
]

UNTIMED_SHARE = 0.05
"""Above this share of a video's pictures without their own timestamps, the summary warns: a
few untimed pictures (those a decoder flushes at the end of some AVIs) change nothing."""


class FootageRead(Protocol):
    """What was read of a video (an audit's :class:`~safewatch.footage.audit.VideoResult`, a
    backtest's :class:`~safewatch.footage.audit_integrity.VideoReading`)."""

    @property
    def video(self) -> Path: ...
    @property
    def clock(self) -> str: ...
    @property
    def coverage(self) -> float | None: ...
    @property
    def bad_packets(self) -> int: ...
    @property
    def untimed(self) -> int: ...
    @property
    def decoded(self) -> int: ...


def iso_time(seconds: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``None`` stays ``None``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def incident_fields(incident: Incident, origin: float, evidence: str) -> dict[str, Any]:
    """One incident as JSON: wall times, offsets into its video, and its evidence files.

    Args:
        incident: The incident.
        origin: Wall-clock time of the video's media time zero (offsets count from it).
        evidence: Folder of its evidence, relative to the report (stills and clips under it).
    """
    return {
        "id": incident.id,
        "camera": incident.camera_id,
        "rule": incident.rule_id,
        "kind": incident.rule_kind,
        "severity": str(incident.severity),
        "track_ids": list(incident.track_ids),
        "zone": incident.zone_id,
        "message": incident.message,
        "started_at": iso_time(incident.started_at),
        "ended_at": iso_time(incident.ended_at),
        "start_offset_s": round(incident.started_at - origin, 3),
        "end_offset_s": None if incident.ended_at is None else round(incident.ended_at - origin, 3),
        "duration_s": None if incident.duration is None else round(incident.duration, 3),
        "peak_confidence": round(incident.peak_confidence, 4),
        "still": None if incident.snapshot is None else f"{evidence}/{incident.snapshot}",
        "clip": None if incident.clip is None else f"{evidence}/{incident.clip}",
    }


def incident_record(incident: Incident, result: VideoResult) -> dict[str, Any]:
    """One incident of an audit as ``incidents.json`` lists it (its video first)."""
    return {
        "video": str(result.video),
        **incident_fields(incident, result.stats.origin, "evidence"),
    }


def footage_fields(read: FootageRead) -> dict[str, Any]:
    """Where a video's times came from and how much of it was read, as JSON (``incidents.json``
    and ``backtest.json`` say them alike)."""
    return {
        "clock": read.clock,
        "coverage": None if read.coverage is None else round(read.coverage, 4),
        "undecodable_packets": read.bad_packets,
        "untimed_frames": read.untimed,
    }


def write_incidents_json(report: AuditReport, site: LoadedSite, rules: RuleSet) -> Path:
    """Write ``incidents.json`` (videos analysed, then incidents in time order)."""
    videos = [
        {
            "path": str(r.video),
            "camera": r.camera_id,
            "frames_analysed": r.stats.frames,
            "media_seconds": round(r.stats.last_pts - r.stats.first_pts, 3),
            **footage_fields(r),
            "started_at": iso_time(r.stats.origin),
            "analysis_fps": round(r.stats.fps, 2),
            "tracks": {label: len(ids) for label, ids in sorted(r.stats.tracks.items())},
            "incidents": len(r.incidents),
            "annotated_video": None if r.annotated is None else r.annotated.name,
        }
        for r in report.results
    ]
    incidents = [incident_record(i, r) for r in report.results for i in r.incidents]
    document = {
        "safewatch": __version__,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "site": site.config.site.name,
        "rules": sorted(rule.id for rule in rules.rules),
        "videos": videos,
        "incidents": incidents,
    }
    path = report.out_dir / RESULT
    atomic_write(path, json.dumps(document, indent=2) + "\n")
    return path


def print_summary(report: AuditReport, console: Console) -> None:
    """Print one table of videos and one of incidents per rule."""
    videos = Table("video", "camera", "frames", "fps", "read", "tracks", "incidents", title="Audit")
    per_rule: Counter[tuple[str, str, str]] = Counter()
    seconds: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    for r in report.results:
        tracks = ", ".join(f"{len(v)} {k}" for k, v in sorted(r.stats.tracks.items())) or "-"
        videos.add_row(
            r.video.name,
            r.camera_id,
            str(r.stats.frames),
            f"{r.stats.fps:.1f}",
            "?" if r.coverage is None else f"{r.coverage:.1%}",
            tracks,
            str(len(r.incidents)),
        )
        for incident in r.incidents:
            key = (incident.rule_id, incident.rule_kind, str(incident.severity))
            per_rule[key] += 1
            seconds[key] += incident.duration or 0.0
    console.print(videos)
    if per_rule:
        rules = Table("rule", "kind", "severity", "incidents", "total s", title="Incidents")
        for key, count in sorted(per_rule.items()):
            rules.add_row(*key, str(count), f"{seconds[key]:.1f}")
        console.print(rules)
    else:
        console.print("no incidents")
    for line in footage_warnings(report.results):
        console.print(line, highlight=False)
    if report.incidents_json is not None:
        console.print(f"written: {report.incidents_json}")


def incomplete_videos(report: AuditReport) -> list[VideoResult]:
    """Videos of which part could not be read (``audit --strict`` fails on any)."""
    return [r for r in report.results if _incomplete(r)]


def _incomplete(read: FootageRead) -> bool:
    return bool(read.bad_packets) or (read.coverage is not None and read.coverage < FULL)


def footage_warnings(reads: Sequence[FootageRead]) -> list[str]:
    """The lines that say a result covers less than the footage, or times that are not its own:
    an unknown clock, partly decoded videos, pictures without timestamps."""
    lines = []
    if any(r.clock == "epoch" for r in reads):
        lines.append(
            "note: a video has no creation time in its metadata, so its wall times count from "
            "1970-01-01 (a later video's from the end of the one before); pass --start "
            "2026-11-20T14:00:00 to set them (offsets are exact either way)"
        )
    for r in reads:
        if _incomplete(r):
            read = "an unknown share" if r.coverage is None else f"{r.coverage:.1%}"
            lines.append(
                f"warning: only {read} of {r.video} could be decoded ({r.bad_packets} "
                "undecodable packet(s)); its incidents cover only what was read"
            )
    for r in reads:
        if r.untimed > UNTIMED_SHARE * r.decoded:
            lines.append(
                f"warning: {r.untimed} picture(s) of {r.video} carry no usable timestamp "
                "(missing or repeated); they were timed at its frame rate, so its times are "
                "the frame rate's, not the recording's"
            )
    return lines
