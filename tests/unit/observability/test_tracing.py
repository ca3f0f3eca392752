"""Tracing: off and import-free unless configured; when on, an incident write's trace continues
through the bus envelope into the WebSocket broadcast span of the node that reads it."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from incident_factories import make_incident
from safewatch import tracing
from safewatch.api.live import LiveHub
from safewatch.bus import Envelope, PublishAfterCommit, decode, encode
from safewatch.storage import IncidentRepository

pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(exporter=exporter, batch=False, service_name="test", sample_ratio=1.0)
    yield exporter
    tracing.shutdown()


def test_off_by_default_and_nothing_imported() -> None:
    code = (
        "import os, sys; os.environ.pop('OTEL_EXPORTER_OTLP_ENDPOINT', None)\n"
        "from safewatch import tracing\n"
        "assert not tracing.configure()\n"
        "with tracing.span('decode', {'camera': 'a'}) as s: s.set_attribute('x', 1)\n"
        "tracing.record('wait', 1.0, 2.0)\n"
        "assert tracing.carrier() == {}\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_site_endpoint_reaches_spawned_processes_through_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from safewatch.config.tracing import TracingConfig

    # setenv first, so that the variables configure_site sets are removed after the test
    for name in (tracing.TRACE_ENV, tracing.RATIO_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    config = TracingConfig(endpoint="http://127.0.0.1:9/", sample_ratio=0.25)
    try:
        assert tracing.configure_site(config, "analyzer")
        assert tracing.enabled()
    finally:
        tracing.shutdown()
    import os

    assert os.environ[tracing.TRACE_ENV] == "http://127.0.0.1:9/"
    assert os.environ[tracing.RATIO_ENV] == "0.25"


def test_an_empty_variable_does_not_hide_the_site_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/compose.yaml passed ``OTEL_EXPORTER_OTLP_ENDPOINT=`` (empty) to every container:
    the empty value was kept as if set, so a site's ``tracing:`` block traced nothing, here or
    in the processes the server spawns (which read the variables)."""
    import os

    from safewatch.config.tracing import TracingConfig

    monkeypatch.setenv(tracing.TRACE_ENV, "")
    monkeypatch.setenv(tracing.RATIO_ENV, "")
    config = TracingConfig(endpoint="http://127.0.0.1:9/", sample_ratio=0.25)
    try:
        assert tracing.configure_site(config, "analyzer")
        assert tracing.enabled()
    finally:
        tracing.shutdown()
    assert os.environ[tracing.TRACE_ENV] == "http://127.0.0.1:9/"
    assert os.environ[tracing.RATIO_ENV] == "0.25"
    try:  # a spawned process (configure_site(None, ...)) traces to the site's endpoint too
        assert tracing.configure_site(None, "decode")
    finally:
        tracing.shutdown()


def test_the_write_trace_continues_into_the_broadcast(
    spans: InMemorySpanExporter, db_engine: Engine
) -> None:
    hub = LiveHub()
    sent: list[Envelope] = []

    class Wire:
        def publish(self, envelope: Envelope) -> None:
            sent.append(decode(encode(envelope)))  # as over Redis

    repository = IncidentRepository(db_engine)
    repository.add_change_hook(PublishAfterCommit(Wire()))
    repository.upsert(make_incident())
    assert len(sent) == 1 and "traceparent" in sent[0].trace
    hub.publish(sent[0])  # on the API node: the notice keeps the writer's context
    with tracing.span("ws.broadcast", parent=hub_notice_trace(hub, sent[0])):
        pass
    finished = {s.name: s for s in spans.get_finished_spans()}
    write, broadcast = finished["incident.write"], finished["ws.broadcast"]
    assert write.context is not None and broadcast.context is not None
    assert broadcast.context.trace_id == write.context.trace_id
    assert broadcast.parent is not None and broadcast.parent.span_id == write.context.span_id
    assert write.attributes is not None and "store incident" in str(write.attributes["action"])


def hub_notice_trace(hub: LiveHub, envelope: Envelope) -> dict[str, str]:
    import asyncio

    async def take() -> dict[str, str]:
        subscription = hub.subscribe(incidents=True)
        hub.publish(envelope)
        await subscription.wait(1.0)
        return subscription.notices()[0].trace

    return asyncio.run(take())


def test_a_recorded_span_keeps_its_times(spans: InMemorySpanExporter) -> None:
    with tracing.span("inference", {"frames": 2}):
        tracing.record("wait", 100.0, 100.25, {"camera": "a"})
    wait = next(s for s in spans.get_finished_spans() if s.name == "wait")
    assert wait.start_time == 100_000_000_000 and wait.end_time == 100_250_000_000
    inference = next(s for s in spans.get_finished_spans() if s.name == "inference")
    assert wait.parent is not None and inference.context is not None
    assert wait.parent.span_id == inference.context.span_id


def test_the_exporters_repeated_warnings_pass_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    quiet = tracing.OncePerMinute(clock=lambda: now[0])
    logger = logging.getLogger("test.tracing.exporter")
    logger.addFilter(quiet)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            for second in range(0, 120, 2):  # a retry every 2 s for two minutes
                now[0] = float(second)
                logger.warning("Transient error %s, retrying in %.2fs.", "refused", 1.5)
                logger.error("Failed to export %s batch.", "spans")
    finally:
        logger.removeFilter(quiet)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Transient error refused, retrying in 1.50s.",
        "Failed to export spans batch.",
        "Transient error refused, retrying in 1.50s. (29 more like it not logged)",
        "Failed to export spans batch. (29 more like it not logged)",
    ]


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """A collector that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_collector_that_never_answers_holds_the_exit_up_briefly(
    silent_collector: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert tracing.configure(endpoint=silent_collector, service_name="test", sample_ratio=1.0)
    exporter_log = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    assert tracing._QUIET in exporter_log.filters
    with tracing.span("inference", {"camera": "a"}):
        pass
    started = time.monotonic()
    tracing.shutdown()  # the SDK's own waited for the exporter's 10 s timeout at least
    assert time.monotonic() - started < 8.0
    assert "did not take the last spans" in caplog.text


def test_a_process_that_does_not_shut_tracing_down_exits_at_once(silent_collector: str) -> None:
    code = (
        "import sys, time\n"
        "from safewatch import tracing\n"
        "assert tracing.configure(endpoint=sys.argv[1], sample_ratio=1.0)\n"
        "with tracing.span('inference'): pass\n"
        "print(time.monotonic())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, silent_collector],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # No SDK at-exit flush: it waited up to 30 s for this collector.
    assert time.monotonic() - float(done.stdout) < 8.0


@pytest.mark.parametrize(("value", "kept"), [("5", 1.0), ("-0.5", 0.0), ("nan", 1.0)])
def test_a_sampler_ratio_out_of_range_is_a_warning_not_a_crash(
    value: str, kept: float, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv(tracing.RATIO_ENV, value)
    try:
        assert tracing.configure(exporter=InMemorySpanExporter(), batch=False)
        sampler = tracing._state.provider.sampler
        assert f"TraceIdRatioBased{{{kept}}}" in sampler.get_description()
    finally:
        tracing.shutdown()
    assert f"{tracing.RATIO_ENV}={value} is not a ratio from 0 to 1" in caplog.text


def test_a_spans_error_is_recorded_with_its_secrets_masked(spans: InMemorySpanExporter) -> None:
    from opentelemetry.trace import StatusCode

    from safewatch.config.secrets import SECRETS

    SECRETS.add(["tok-0123456789abcdef"])  # the conftest forgets it after the test
    with (
        pytest.raises(OSError, match="s3cretpass"),  # the exception itself is left alone
        tracing.span("decode", {"camera": "yard"}),
        tracing.span("open"),
    ):
        raise OSError("cannot open rtsp://admin:s3cretpass@10.0.0.1/ with tok-0123456789abcdef")
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["open", "decode"]
    for done in finished:  # the outer span sees the same exception: masked there too
        assert done.status.status_code is StatusCode.ERROR
        assert done.status.description == "OSError: cannot open rtsp://***:***@10.0.0.1/ with ***"
        [event] = done.events
        attributes = dict(event.attributes or {})
        assert attributes["exception.message"] == "cannot open rtsp://***:***@10.0.0.1/ with ***"
        assert attributes["exception.type"] == "OSError"
        assert "Traceback" in str(attributes["exception.stacktrace"])
        text = repr((done.status.description, attributes))
        assert "s3cretpass" not in text and "0123456789abcdef" not in text
