"""``safewatch export-worker``: copy incident changes from the cluster's Redis into JSON lines."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from safewatch.cli.app import app, err
from safewatch.errors import ConfigError

__all__ = ["export_worker"]


@app.command("export-worker")
def export_worker(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder of the incidents-YYYY-MM-DD.jsonl files.")
    ],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Site file whose cluster.redis_url to read."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option("--redis", help="Redis URL (instead of the site file's cluster.redis_url)."),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            help="Whose stream to read: the site's cluster.redis_namespace, or else its "
            "site.name (default with -c: that site's). Needed with --redis alone.",
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Incident database URL (default with -c: the site's storage.database): write "
            "in chain order and fill every gap of the stream from the chain.",
        ),
    ] = None,
    group: Annotated[
        str, typer.Option(help="Consumer group: workers of one group share the changes.")
    ] = "export",
    consumer: Annotated[
        str | None, typer.Option(help="This worker's name in the group (default hostname-pid).")
    ] = None,
    claim_idle: Annotated[
        float,
        typer.Option(
            min=1.0, help="Seconds before changes another worker left pending are taken over."
        ),
    ] = 60.0,
) -> None:
    """Write every incident change of the cluster's stream to JSON lines (at least once, by seq).

    Workers of one group share the changes; a crashed worker's unacknowledged changes are taken
    over by another after --claim-idle seconds. With a database (--database, or -c), every change
    of the chain is written once, in order: what the stream lost (trimmed, Redis restarted) is read
    from the chain; run one such worker per group (docs/cluster.md).
    """
    from safewatch.bus.export import ExportWorker
    from safewatch.bus.redis_streams import BusKeys, check_reachable, connect

    base_dir = Path.cwd()
    keys = None if namespace is None else BusKeys.for_name(namespace)
    if config is not None:
        from safewatch.config.loader import load_site

        site = load_site(config)
        base_dir = site.base_dir
        redis_url = redis_url or site.config.cluster.redis_url
        database = database or site.config.storage.database
        keys = keys or BusKeys.for_site(site.config)
    if redis_url is None:
        raise ConfigError("export-worker needs --redis URL or a site file with cluster.redis_url")
    if keys is None:  # every site on a Redis has its own stream: no default is anybody's
        raise ConfigError(
            "export-worker --redis needs --namespace (the site's cluster.redis_namespace, or "
            "else its site.name) or -c site.yaml"
        )
    client = connect(redis_url)
    check_reachable(client)
    repository = None
    if database is not None:
        from safewatch.storage import IncidentRepository, create_engine_for

        repository = IncidentRepository(create_engine_for(database, base_dir), auto_upgrade=False)
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    worker = ExportWorker(
        client,
        out,
        keys=keys,
        consumer=name,
        group=group,
        claim_idle=claim_idle,
        repository=repository,
    )
    stop = threading.Event()

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    source = "stream and chain" if repository is not None else "stream"
    err.print(
        f"export worker {name} (stream {keys.incidents}, group {group}, {source}) writing to {out}",
        highlight=False,
    )
    worker.run(stop)
    err.print(
        f"stopped: {worker.written} line(s) written ({worker.backfilled} from the chain), "
        f"{worker.claimed} claimed, {worker.trimmed} trimmed before they were written"
    )
