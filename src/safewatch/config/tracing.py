"""The site file's ``tracing:`` block: where OpenTelemetry spans go (:mod:`safewatch.tracing`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TracingConfig"]


class TracingConfig(BaseModel):
    """Export spans of the frame path, incident writes, alerts and live feeds over OTLP/HTTP.

    Needs the optional ``tracing`` extra; without it (or without this block and without
    ``OTEL_EXPORTER_OTLP_ENDPOINT``) tracing is a no-op.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        pattern=r"^https?://[^\s]+$",
        description="OTLP/HTTP collector base URL, e.g. http://otel-collector:4318 "
        "(spans go to its /v1/traces).",
    )
    sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of frames traced (per-frame spans add up: 0.05 traces one frame in "
        "twenty); a trace continued from another node follows its first node's choice.",
    )
    service_name: str = Field(
        "safewatch",
        min_length=1,
        description="OpenTelemetry service.name; each process appends its role "
        "(safewatch-analyzer, safewatch-api, safewatch-decode).",
    )
