"""``safewatch serve``: run every camera of a site, live, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.cli.app import app, command, err
from safewatch.errors import ConfigError

if TYPE_CHECKING:
    from safewatch.runtime.cluster_owner import ClusterOwner
    from safewatch.runtime.service import RuntimeService

__all__ = ["serve"]


def _default_rules(site_path: Path) -> Path:
    candidate = site_path.resolve().parent / "rules"
    if candidate.exists():
        return candidate
    raise ConfigError(
        f"no rules given and no rules folder at {candidate}: pass --rules FOLDER_OR_FILE"
    )


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules", "-r", help="Rules folder or file (default: 'rules' beside the site file)."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="HTTP address (default: runtime.http.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default: runtime.http.port).")
    ] = None,
    decode: Annotated[
        str | None,
        typer.Option(help="Decode workers: process or thread (default: runtime.decode)."),
    ] = None,
    api: Annotated[
        str,
        typer.Option(
            help="HTTP server: process (its own, so API load cannot slow the analysis) or "
            "thread (inside the analysis process; for debugging and comparison)."
        ),
    ] = "process",
    api_nice: Annotated[
        int,
        typer.Option(
            min=0, max=19, help="Priority drop of the API process (nice); analysis goes first."
        ),
    ] = 10,
    query_cache: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds an incident list or statistics answer may be reused while no "
            "incident changed (0: off).",
        ),
    ] = 2.0,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Share the site's cameras with other analyzers through leases in PostgreSQL; "
            "a dead analyzer's cameras move (docs/cluster.md).",
        ),
    ] = False,
    role: Annotated[
        str | None,
        typer.Option(
            help="With --cluster: all (cameras and dashboard), analyzer (cameras; only "
            "/healthz, /readyz, /metrics) or api (dashboard and API, no camera). Default all.",
        ),
    ] = None,
    analyzer_id: Annotated[
        str | None,
        typer.Option(help="With --cluster: this analyzer's unique name (default hostname-pid)."),
    ] = None,
) -> None:
    """Run every camera of the site through detection, tracking, rules and incidents.

    Health at /healthz, readiness at /readyz, Prometheus metrics at /metrics. Edits of the site
    file and the rules apply while running (also on SIGHUP). SIGTERM or Ctrl-C stops gracefully:
    open incidents are closed and clips finished first. With --cluster, SIGTERM first gives
    every camera back to the other analyzers (each stopped gracefully), then stops.
    """
    from safewatch.cli.fetch import fetch_site_files
    from safewatch.config.loader import load_site
    from safewatch.runtime.service import RuntimeService, ServeOptions

    if decode not in (None, "process", "thread"):
        raise ConfigError(f"--decode must be process or thread, not {decode!r}")
    if api not in ("process", "thread"):
        raise ConfigError(f"--api must be process or thread, not {api!r}")
    if not cluster and (role is not None or analyzer_id is not None):
        raise ConfigError("--role and --analyzer-id need --cluster")
    if role not in (None, "all", "analyzer", "api"):
        raise ConfigError(f"--role must be all, analyzer or api, not {role!r}")
    site = load_site(config)
    if cluster:
        from safewatch.config.cluster import cluster_refusal

        refusal = cluster_refusal(site)
        if refusal is not None:
            raise refusal
    from safewatch import tracing

    tracing.configure_site(site.config.tracing, (role or "all") if cluster else "serve")
    fetch_site_files(site)
    options = ServeOptions(
        rules=rules if rules is not None else _default_rules(config),
        host=host,
        port=port,
        decode=decode,  # type: ignore[arg-type]  # checked above
        api=api,  # type: ignore[arg-type]  # checked above
        api_nice=api_nice,
        query_cache_seconds=query_cache,
    )
    # INFO too: incidents open/close, rule reloads applied (their losses are WARNINGs anyway)
    for name in ("safewatch.runtime", "safewatch.incidents.manager", "safewatch.rules.watcher"):
        logging.getLogger(name).setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))
    stop = threading.Event()
    reload = threading.Event()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            err.print("stopping already; please wait for incidents and clips to finish")
        stop.set()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        reload.set()

    previous = {
        signum: signal.signal(signum, handler)
        for signum, handler in (
            (signal.SIGTERM, on_stop),
            (signal.SIGINT, on_stop),
            (signal.SIGHUP, on_hup),
        )
    }
    runner: RuntimeService | ClusterOwner
    if cluster:
        from safewatch.runtime.cluster_owner import ClusterOwner, default_analyzer_id

        member = analyzer_id or default_analyzer_id()
        runner = ClusterOwner(site, options, role or "all", member)  # type: ignore[arg-type]
        service = runner.service
        joined = "" if role == "api" else f" as analyzer {member!r}"
    else:
        runner = service = RuntimeService(site, options)
        joined = ""
    try:
        runner.start()
    except BaseException:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        raise
    try:
        url = service.http_url
        if cluster:
            err.print(
                f"safewatch: cluster role {role or 'all'} for {site.config.site.name!r}"
                f"{joined}; cameras follow the leases"
            )
        else:
            cameras = len(service.supervisor.camera_ids())
            err.print(f"safewatch: serving {cameras} camera(s) of {site.config.site.name!r}")
        if url is not None:
            err.print(f"  dashboard  {url}/")
            err.print(f"  readiness  {url}/readyz")
            err.print(f"  metrics    {url}/metrics")
            err.print(f"  liveness   {url}/healthz")
        err.print("  stop with Ctrl-C or SIGTERM; edits of the site file and rules apply live")
        _hint_first_admin(site.config.storage.database, site.base_dir, config)
        while not stop.wait(0.5):
            if reload.is_set():
                reload.clear()
                service.reload_site()
        err.print("safewatch: stopping (finishing open incidents and clips) ...")
    finally:
        report = runner.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        tracing.shutdown()  # the last spans, bounded: no 30 s wait for a collector that is down
    closed = len(report.closed)
    err.print(f"safewatch: stopped in {report.seconds:.1f} s; {closed} open incident(s) closed")


def _hint_first_admin(database: str, base_dir: Path, config: Path) -> None:
    """While the site has no user, say how to make the first admin (the dashboard needs one)."""
    from safewatch.api.auth.passwords import MIN_PASSWORD_LENGTH
    from safewatch.api.auth.store import AuthStore
    from safewatch.storage import create_engine_for

    engine = create_engine_for(database, base_dir)
    try:
        if AuthStore(engine).count_users() > 0:
            return
    finally:
        engine.dispose()
    safewatch = command()  # after `make run` that is .venv/bin/safewatch, not on PATH
    err.print(
        f"  no user yet: make the first admin (a password of {MIN_PASSWORD_LENGTH} characters or "
        "more) with\n"
        f"    {safewatch} users add admin --role admin -c {config}\n"
        f"  or, from a script: printf '%s\\n' \"$PASSWORD\" | {safewatch} users add admin "
        f"--role admin --password-stdin -c {config}",
        highlight=False,
        soft_wrap=True,
    )
