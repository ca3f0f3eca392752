"""Video in: files and cameras decoded with PyAV, sampled to the analysis rate, as ``Frame``s."""

from safewatch.ingest.av_options import OpenSpec, SourceKind, build_open_spec, source_kind
from safewatch.ingest.backoff import Backoff
from safewatch.ingest.factory import open_source
from safewatch.ingest.file_source import FileSource
from safewatch.ingest.live_source import LiveSource
from safewatch.ingest.redact import redact_text, redact_url
from safewatch.ingest.sampler import FrameSampler
from safewatch.ingest.source import Source
from safewatch.ingest.state import (
    SourceInfo,
    SourceState,
    SourceStats,
    StateChange,
    StateListener,
)

__all__ = [
    "Backoff",
    "FileSource",
    "FrameSampler",
    "LiveSource",
    "OpenSpec",
    "Source",
    "SourceInfo",
    "SourceKind",
    "SourceState",
    "SourceStats",
    "StateChange",
    "StateListener",
    "build_open_spec",
    "open_source",
    "redact_text",
    "redact_url",
    "source_kind",
]
