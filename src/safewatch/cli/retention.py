"""``safewatch retention``: remove expired evidence under the site's retention policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safewatch.cli.app import app, out

__all__ = ["retention"]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover


@app.command()
def retention(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go.")] = False,
) -> None:
    """Remove evidence of closed incidents past the site's retention (days, max_bytes).

    Exits with status 1 if a file could not be deleted (it is retried next run).
    """
    from safewatch.config.loader import load_site
    from safewatch.incidents.retention import apply_retention
    from safewatch.incidents.site_storage import open_site_storage

    site = load_site(config)
    policy = site.config.retention
    if policy.days is None and policy.max_bytes is None:
        out.print(
            "no retention policy in the site file (retention: {days, max_bytes}): kept all",
            soft_wrap=True,
        )
        return
    storage = open_site_storage(site)
    try:
        report = apply_retention(
            storage.repository, storage.evidence.backend, policy, dry_run=dry_run
        )
    finally:
        storage.close()
    verb = "would remove" if dry_run else "removed"
    # Files a failed delete left behind (their removal is already chained): the real run deletes
    # them, so the dry run lists them too, and both count them in the totals.
    for key in report.swept:
        out.print(
            f"{verb} {key} (left over: its removal was recorded by an earlier run)",
            highlight=False,
            soft_wrap=True,
        )
    for removal in report.removed:
        out.print(
            f"{verb} {removal.key} ({removal.rule}, {_size(removal.size)})",
            highlight=False,
            soft_wrap=True,
        )
    for key in report.failed:
        out.print(
            f"[yellow]delete failed, retried next run[/yellow]: {key}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        f"{verb} {len(report.removed) + len(report.swept)} file(s), "
        f"{_size(report.freed_bytes)}; kept "
        f"{_size(report.kept_bytes)} ({_size(report.protected_bytes)} of open or acknowledged "
        "incidents)",
        highlight=False,
        soft_wrap=True,
    )
    if report.over_budget_bytes:
        out.print(
            f"[yellow]still {_size(report.over_budget_bytes)} over max_bytes[/yellow]: the rest "
            "belongs to incidents that are not closed",
            soft_wrap=True,
        )
    if report.failed:
        # A cron job or systemd timer sees the failure only in the exit status: a file that
        # cannot be deleted (immutable, read-only mount) is retried every run, never removed.
        out.print(
            f"[red]{len(report.failed)} delete(s) failed[/red]: their removal is recorded; "
            "fix the cause and run again",
            soft_wrap=True,
        )
        raise typer.Exit(1)
