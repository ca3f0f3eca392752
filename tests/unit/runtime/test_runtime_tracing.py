"""With tracing on, an inference round is one span with each frame's wait since its decoder
published it as a child, so a trace shows where a frame's age went."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_runtime_inference import Harness, plan

from safewatch import tracing

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(exporter=exporter, batch=False, sample_ratio=1.0)
    yield exporter
    tracing.shutdown()


def test_an_inference_round_traces_each_frames_wait(spans: InMemorySpanExporter) -> None:
    h = Harness({c: plan(c) for c in "ab"})
    for camera in "ab":
        h.offer(camera, 3)
    assert len(h.round()) == 2
    finished = spans.get_finished_spans()
    inference = [s for s in finished if s.name == "inference"]
    waits = [s for s in finished if s.name == "frame.wait"]
    assert len(inference) == 1 and inference[0].context is not None
    assert inference[0].attributes is not None and inference[0].attributes["frames"] == 2
    assert sorted(str((w.attributes or {})["camera"]) for w in waits) == ["a", "b"]
    for wait in waits:
        assert wait.parent is not None and wait.parent.span_id == inference[0].context.span_id
        assert wait.start_time is not None and wait.end_time is not None
        assert wait.end_time >= wait.start_time
