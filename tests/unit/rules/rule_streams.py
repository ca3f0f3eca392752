"""A fixed stream of rule events, recorded once, that every engine change must reproduce exactly.

The rule engine is rewritten for speed from time to time (shared per-frame geometry, cheaper
episode bookkeeping); none of that may change what it reports. :func:`event_stream` drives the
engine over a fixed synthetic workload that exercises every kind and the engine's own paths, and
:func:`digests` reduces the events to one short digest per frame. The digests of the engine
before a rewrite are stored in ``data/event_stream.json``; ``test_rules_stream.py`` compares.

The workload:

* bench/rules' 20 rules and 50 moving tracks on the calibrated 1280x720 ``yard`` camera;
* the same tracks in slow motion (each position held for 3 s, some tracks missing now and then),
  so people stand still long enough for ``dwell`` and ``zone_clear``, and grace gaps happen;
* a second, uncalibrated camera at 640x360 interleaved with the first (rules in metres are
  skipped there; zones belong to ``yard`` only);
* a jump of the clock past 22:00, where the scheduled rule closes, then the next morning with
  a few tracks only (someone alone in a zone);
* a hot reload half-way (one rule's severity changes, one zone moves), and ``finish`` at the end.

Regenerate the fixture only from a known-good engine:
``PYTHONPATH=. python tests/unit/rules/rule_streams.py``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import yaml
from bench.rules import CALIBRATION, CAMERA, RULES, synthetic_frames

from safewatch.domain import RuleEvent, Track, TrackedFrame
from safewatch.rules import RuleEngine, RuleSet, load_rules

FIXTURE = Path(__file__).parent / "data" / "event_stream.json"
OTHER = "gate_cam"
"""The second, uncalibrated camera."""


def _rules(spec: dict[str, object]) -> RuleSet:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rules.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return load_rules(path)


def _reloaded_spec() -> dict[str, object]:
    """bench/rules' set with one rule's severity changed and one zone moved."""
    spec = copy.deepcopy(RULES)
    spec["rules"][0]["severity"] = "critical"  # hardhat: only reporting changes
    spec["zones"]["exit"]["polygon"] = [[0.85, 0.55], [1.0, 0.55], [1.0, 0.9], [0.85, 0.9]]
    return spec


def _scaled(tracked: TrackedFrame, camera: str, scale: float) -> TrackedFrame:
    tracks = tuple(
        replace(t, xyxy=(x1 * scale, y1 * scale, x2 * scale, y2 * scale))
        for t in tracked.tracks
        for x1, y1, x2, y2 in [t.xyxy]
    )
    return replace(
        tracked,
        camera_id=camera,
        width=round(tracked.width * scale),
        height=round(tracked.height * scale),
        tracks=tracks,
    )


def frames() -> Iterator[TrackedFrame]:
    """The workload's frames, in the order the engine sees them (see the module docstring)."""
    moving = synthetic_frames(240)
    yield from moving
    rng = random.Random(11)
    base = moving[-1].timestamp
    slow = synthetic_frames(22, seed=3)
    for index in range(360):
        source = slow[index // 30 + 10]
        t = base + 0.1 * (index + 1)
        tracks: tuple[Track, ...] = source.tracks
        if rng.random() < 0.2:  # a few tracks go missing for a frame
            tracks = tuple(tr for tr in tracks if rng.random() > 0.15)
        tracked = replace(source, seq=240 + index, pts=t - moving[0].timestamp, timestamp=t,
                          tracks=tracks)  # fmt: skip
        yield tracked
        if index % 3 == 0:
            yield _scaled(tracked, OTHER, 0.5)
    # Past 22:00 local (UTC): the scheduled rule closes; then back the next morning.
    for index, source in enumerate(moving[:60]):
        t = moving[0].timestamp + 13 * 3600 + 0.1 * index
        yield replace(source, seq=600 + index, pts=t - moving[0].timestamp, timestamp=t)
    # The next morning, a quiet yard: a few tracks, so someone may be alone in a zone.
    for index, source in enumerate(moving[60:200]):
        t = moving[0].timestamp + 24 * 3600 + 0.1 * index
        few = tuple(tr for tr in source.tracks if tr.track_id % 6 == 0)
        yield replace(source, seq=660 + index, pts=t - moving[0].timestamp, timestamp=t,
                      tracks=few)  # fmt: skip


def event_stream() -> Iterator[list[RuleEvent]]:
    """The engine's events for each step of the workload: frames, the reload, ``finish``."""
    engine = RuleEngine(_rules(RULES), "UTC", {CAMERA: CALIBRATION})
    for index, tracked in enumerate(frames()):
        if index == 400:
            yield engine.replace_rules(_rules(_reloaded_spec()))
        yield engine.evaluate(tracked)
    yield engine.finish(CAMERA)
    yield engine.finish(OTHER)


def _canonical(event: RuleEvent) -> list[object]:
    return [
        event.rule_id, event.rule_kind, event.camera_id, str(event.phase), list(event.track_ids),
        event.started_at, event.at, str(event.severity), event.confidence, event.message,
        event.zone_id, event.seq,
    ]  # fmt: skip


def digests() -> list[tuple[int, str]]:
    """``(event count, digest)`` per step of :func:`event_stream` (floats compared exactly)."""
    result: list[tuple[int, str]] = []
    for events in event_stream():
        text = json.dumps([_canonical(e) for e in events])
        result.append((len(events), hashlib.sha256(text.encode()).hexdigest()[:16]))
    return result


if __name__ == "__main__":
    FIXTURE.parent.mkdir(exist_ok=True)
    steps = digests()
    FIXTURE.write_text(json.dumps({"steps": steps}, separators=(",", ":")) + "\n")
    print(f"{len(steps)} steps, {sum(n for n, _ in steps)} events -> {FIXTURE}")
