"""The engine reports exactly what it reported before its speed work, event for event."""

from __future__ import annotations

import json

from rule_streams import FIXTURE, digests


def test_event_stream_matches_the_recorded_one() -> None:
    expected = [(n, digest) for n, digest in json.loads(FIXTURE.read_text())["steps"]]
    actual = digests()
    assert len(actual) == len(expected)
    assert sum(n for n, _ in expected) > 50_000, "the workload makes rules fire"
    first = next((i for i, (a, e) in enumerate(zip(actual, expected, strict=True)) if a != e), None)
    assert first is None, (
        f"step {first}: {actual[first][0]} events (digest {actual[first][1]}), "
        f"recorded {expected[first][0]} ({expected[first][1]})"
    )
