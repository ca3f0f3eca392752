"""What ``safewatch serve``'s command line may override of a site file's ``runtime`` block.

Apart from :mod:`safewatch.runtime.service` so that the parts the service wires (the HTTP front,
the cluster owner) read the same options without importing the service itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from safewatch.config.runtime import DecodeMode

__all__ = ["ApiMode", "ServeOptions"]

ApiMode = Literal["process", "thread", "ops"]
"""Where the HTTP server runs: its own process (the default) or a thread of the server; ``ops``:
only ``/healthz``, ``/readyz`` and ``/metrics``, on a thread (an analyzer of a cluster)."""


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What the command line may override of the site file's ``runtime`` block.

    Attributes:
        rules: Rule folder or file.
        host: HTTP address; default ``runtime.http.host``.
        port: HTTP port; default ``runtime.http.port`` (0 picks a free one).
        decode: Decode mode; default ``runtime.decode``.
        http: Serve ``/healthz``, ``/readyz`` and ``/metrics`` (benchmarks may turn it off).
        api: ``process`` runs the HTTP server in its own process, so API load cannot take the
            analysis's interpreter (:mod:`safewatch.runtime.api_link`); ``thread`` runs it on
            a thread of this process (one interpreter for both; for debugging and comparison).
        api_nice: Added to the API process's ``nice`` value: under CPU contention the kernel
            gives the analysis the CPU first.
        query_cache_seconds: Longest reuse of an incident list or statistics answer while no
            incident changed (:mod:`safewatch.api.query_cache`); 0 turns the cache off.
        watch_site: Poll the site file and apply its edits.
        site_poll_seconds: How often the site file is checked.
        cluster: Cameras run only while this process owns them (``serve --cluster``, see
            :mod:`safewatch.runtime.cluster_owner`): none at start, then those handed over with
            :meth:`RuntimeService.own_camera`. Incidents found open at start are left to their
            cameras' owners instead of being closed as abandoned.
        witness_alerts: Send each chain witness through ``alerts.witness``'s channels. A
            cluster's analyzers turn it off: the chain is one, so one node (the API node, role
            ``api`` or ``all``) sends it, not one copy per analyzer.
    """

    rules: Path
    host: str | None = None
    port: int | None = None
    decode: DecodeMode | None = None
    http: bool = True
    api: ApiMode = "process"
    api_nice: int = 10
    query_cache_seconds: float = 2.0
    watch_site: bool = True
    site_poll_seconds: float = 1.0
    cluster: bool = False
    witness_alerts: bool = True
