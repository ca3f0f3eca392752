"""OpenTelemetry spans for the frame path, incident writes, alerts and the live feeds: optional.

Tracing is off unless a site's ``tracing:`` section or ``OTEL_EXPORTER_OTLP_ENDPOINT`` names an
OTLP collector *and* the optional ``tracing`` extra (``opentelemetry-sdk`` and the OTLP/HTTP
exporter) is installed; then :func:`configure` builds a tracer provider that exports in batches
from a background thread. Nothing is imported from OpenTelemetry until then, so an install
without the extra, and a site that does not ask for tracing, pay nothing at import.

:func:`span` is called on every analysed frame (decode, inference, rules), so while tracing is
off it returns one shared do-nothing context manager: a global read and a call, measured in
``bench/tracing_overhead.py`` far below 1 % of a frame's processing. Span names are the stages
(``decode``, ``inference``, ``rules``, ``incident.write``, ``alert.send``, ``ws.broadcast``,
``bus.publish``); attributes carry the camera and rule so a trace viewer can follow one camera's
staleness chain. :func:`carrier` gives the current span's W3C context for a bus envelope, and
``span(..., parent=envelope.trace)`` continues it on the node that reads the envelope.

A collector that is down costs little: the exporter's own warnings (a retry every 1-4 s, a
dropped batch every ~7 s, in every process) pass at most once a minute per kind
(:class:`OncePerMinute`), and a process's exit waits at most :data:`SHUTDOWN_SECONDS` for the
last spans (:func:`shutdown`), not the SDK's 30 s at-exit flush.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safewatch.config.tracing import TracingConfig

__all__ = [
    "SHUTDOWN_SECONDS",
    "TRACE_ENV",
    "OncePerMinute",
    "carrier",
    "configure",
    "configure_site",
    "enabled",
    "record",
    "shutdown",
    "span",
]

log = logging.getLogger(__name__)

TRACE_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""The standard OpenTelemetry variable; set, it turns tracing on like a ``tracing:`` section."""

RATIO_ENV = "OTEL_TRACES_SAMPLER_ARG"
"""The standard variable for the sampler's ratio (read when no ratio is passed)."""

SHUTDOWN_SECONDS = 2.0
"""Longest wait for the last spans at a process's exit: a collector that answers takes a
fraction of it; one that does not would hold the exit up for the exporter's 10 s timeout and
its retries (30 s by the SDK's own at-exit flush)."""

AttributeValue = str | bool | int | float


class OncePerMinute(logging.Filter):
    """Let one record per (logger, level, message template) through per ``seconds``.

    Put on the OpenTelemetry exporter's and batch processor's loggers: with the collector
    down, every process logged a warning every 1-4 s and an error every ~7 s for as long as it
    was down. The next record let through says how many like it were held back.

    Args:
        seconds: Shortest time between two records of one kind.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, int, object], float] = {}
        self._held: dict[tuple[str, int, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` for a repeat within ``seconds``; else ``True`` (the count held back added)."""
        kind = (record.name, record.levelno, record.msg)
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._seconds:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it not logged)"
            record.args = None
        return True


_EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)
"""Where the SDK (1.45) and its OTLP/HTTP exporter log export failures."""

_QUIET = OncePerMinute()


class _NoSpan:
    """The span of tracing-off: a context manager and a span that ignore everything."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def set_attribute(self, _key: str, _value: AttributeValue) -> None:
        """Ignored."""

    def record_exception(self, _exc: BaseException) -> None:
        """Ignored."""


class _State:
    """The configured tracer (``None``: tracing off) and its provider."""

    __slots__ = ("provider", "tracer")

    def __init__(self) -> None:
        self.tracer: Any = None
        self.provider: Any = None


_NO_SPAN = _NoSpan()
_state = _State()
_lock = threading.Lock()


def enabled() -> bool:
    """Whether spans are recorded (a collector is configured and the extra is installed)."""
    return _state.tracer is not None


def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    parent: Mapping[str, str] | None = None,
) -> Any:
    """A context manager around one stage; ``with span("inference", {"camera": cam}):``.

    Args:
        name: The stage.
        attributes: Searchable facts of this span (camera, rule, incident).
        parent: A W3C carrier from :func:`carrier` (a bus envelope's ``trace``): the span joins
            that trace instead of the current one.

    Returns:
        The OpenTelemetry span's context manager, or a shared no-op one when tracing is off.
    """
    tracer = _state.tracer
    if tracer is None:
        return _NO_SPAN
    context = None
    if parent:
        from opentelemetry.propagate import extract

        context = extract(dict(parent))
    return _Redacting(
        tracer.start_as_current_span(
            name,
            context=context,
            attributes=attributes,
            # The SDK's own put str(exc) and the traceback in the span as they were: a camera
            # URL's password, a token, went to the collector past the log's redaction.
            record_exception=False,
            set_status_on_exception=False,
        )
    )


class _Redacting:
    """A span's context manager that records an exception with its secrets masked."""

    __slots__ = ("_manager", "_span")

    def __init__(self, manager: Any) -> None:
        self._manager = manager
        self._span: Any = None

    def __enter__(self) -> Any:
        self._span = self._manager.__enter__()
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> Any:
        # Exception only, as the SDK: GeneratorExit, KeyboardInterrupt are no span's error.
        if isinstance(error, Exception) and self._span.is_recording():
            _record_error(self._span, error)
        return self._manager.__exit__(kind, error, tb)


def _record_error(current: Any, error: Exception) -> None:
    import traceback

    from opentelemetry.trace import Status, StatusCode

    from safewatch.config.secrets import redact_secrets

    message = redact_secrets(str(error))
    stack = redact_secrets("".join(traceback.format_exception(error)))
    current.record_exception(
        error,
        attributes={"exception.message": message, "exception.stacktrace": stack},
        escaped=True,
    )
    current.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {message}"))


def record(
    name: str, start: float, end: float, attributes: Mapping[str, AttributeValue] | None = None
) -> None:
    """Record a span that already happened (wall-clock seconds), as a child of the current one:
    for stages timed elsewhere, like a frame's wait between its decoder and inference."""
    tracer = _state.tracer
    if tracer is None:
        return
    done = tracer.start_span(name, attributes=attributes, start_time=int(start * 1e9))
    done.end(end_time=int(max(start, end) * 1e9))


def carrier() -> dict[str, str]:
    """The current span's W3C trace context (``traceparent``, ...); empty when tracing is off."""
    if _state.tracer is None:
        return {}
    from opentelemetry.propagate import inject

    found: dict[str, str] = {}
    inject(found)
    return found


def configure(
    *,
    endpoint: str | None = None,
    service_name: str = "safewatch",
    sample_ratio: float | None = None,
    exporter: Any = None,
    batch: bool = True,
) -> bool:
    """Turn tracing on if it is asked for and possible; ``True`` when spans will be recorded.

    Args:
        endpoint: OTLP/HTTP collector base URL (``http://collector:4318``) from the site's
            ``tracing:`` section; ``None`` falls back to ``OTEL_EXPORTER_OTLP_ENDPOINT``.
        service_name: ``service.name`` of the spans (``safewatch-analyzer``, ``safewatch-api``).
        sample_ratio: Fraction of new traces kept (a trace continued from an envelope follows its
            parent's decision); ``None``: ``OTEL_TRACES_SAMPLER_ARG``, else 1.
        exporter: A span exporter to use instead of OTLP (tests pass the SDK's in-memory one).
        batch: Export from a background thread in batches (``False``: synchronously, for tests).
    """
    endpoint = endpoint or os.environ.get(TRACE_ENV) or None
    if exporter is None and endpoint is None:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError:
        log.warning(
            "tracing is configured but OpenTelemetry's SDK is not installed: "
            "pip install 'safewatch[tracing]'; running without traces"
        )
        return False
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "tracing is configured but the OTLP exporter is not installed: "
                "pip install 'safewatch[tracing]'; running without traces"
            )
            return False
        # The exporter reads the variable itself (and appends /v1/traces); a site's endpoint is
        # a base URL like the variable's, so the path is added here.
        url = None if endpoint == os.environ.get(TRACE_ENV) else _traces_url(endpoint)
        exporter = OTLPSpanExporter(endpoint=url)
    if sample_ratio is None:
        try:
            sample_ratio = float(os.environ.get(RATIO_ENV, "1"))
        except ValueError:
            log.warning("%s is not a number; tracing every frame", RATIO_ENV)
            sample_ratio = 1.0
        if not 0.0 <= sample_ratio <= 1.0:  # NaN too: the sampler raised, and serve with it
            kept = 0.0 if sample_ratio < 0 else 1.0
            log.warning(
                "%s=%g is not a ratio from 0 to 1; tracing with %g", RATIO_ENV, sample_ratio, kept
            )
            sample_ratio = kept
    for name in _EXPORT_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET)  # the same filter once: no-op when present
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        # Its at-exit flush waited up to 30 s for a collector that does not answer; the
        # processes call shutdown() themselves, bounded.
        shutdown_on_exit=False,
    )
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    with _lock:
        previous = _state.provider
        _state.provider = provider
        _state.tracer = provider.get_tracer("safewatch")
    if previous is not None:
        _shut(previous, SHUTDOWN_SECONDS)
    return True


def configure_site(config: TracingConfig | None, role: str) -> bool:
    """Turn tracing on for a process of a site (``role``: analyzer, api, decode, ...).

    The site's endpoint and ratio are also put in the standard variables (unless already set),
    so processes this one spawns (decoders, the API process) trace to the same place by calling
    ``configure_site(None, role)``. A variable set to the empty string counts as unset, as
    :func:`configure` reads it: deploy/compose.yaml passed ``OTEL_EXPORTER_OTLP_ENDPOINT=`` (empty)
    to every container, and keeping that empty value turned off the site's ``tracing:`` block.
    """
    if config is not None:
        for name, value in ((TRACE_ENV, config.endpoint), (RATIO_ENV, repr(config.sample_ratio))):
            if not os.environ.get(name):
                os.environ[name] = value
    base = "safewatch" if config is None else config.service_name
    return configure(service_name=f"{base}-{role}")


def _traces_url(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def shutdown(timeout: float = SHUTDOWN_SECONDS) -> None:
    """Export what is buffered and turn tracing off (at process exit, and between tests).

    Args:
        timeout: Longest wait for the export; spans a collector has not taken by then are
            dropped (the export goes on in a daemon thread, which does not hold the exit up).
    """
    with _lock:
        provider = _state.provider
        _state.provider = _state.tracer = None
    if provider is not None:
        _shut(provider, timeout)


def _shut(provider: Any, timeout: float) -> None:
    # The SDK's shutdown takes no timeout (its batch processor waits up to 30 s).
    worker = threading.Thread(target=provider.shutdown, name="tracing-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("tracing: the collector did not take the last spans in %g s; dropped", timeout)
