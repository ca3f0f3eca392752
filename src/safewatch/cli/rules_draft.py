"""``safewatch rules draft "TEXT"``: a rule from plain words, shown, then saved only on a yes.

The command prints what the model proposed as YAML, the diff against the target rule file, and
the change in plain words (the same sentences as ``rules explain``), then asks. Without a
terminal to ask on (a script, CI) it saves only with ``--yes``, so a pipeline can never save a
draft nobody looked at by accident. The save is recorded in the site's audit log (the dashboard's,
in the site database) under the OS user's name. The running server picks the saved file up
through its hot reload, like any hand edit.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from safewatch.cli.app import out
from safewatch.cli.rules import rules_app

__all__ = ["rules_draft"]


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - a uid without a passwd entry
        return "unknown"


@rules_app.command("draft")
def rules_draft(
    request: Annotated[str, typer.Argument(help="What the rule should enforce, in plain words.")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Site file (cameras, and its `llm` block).")
    ],
    rules: Annotated[Path, typer.Option("--rules", "-r", help="Rules folder or file.")],
    target: Annotated[
        str | None,
        typer.Option(help="Rule file in the folder the draft goes to (default: drafts.yaml)."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Save a valid draft without asking.")
    ] = False,
    allow_modify: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-modify",
            help="Let the draft change (or disable) this existing rule, zone or line of the "
            "target; the request must name it too. Repeatable.",
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Endpoint to use instead of the site's llm.base_url.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model to use instead of the site's llm.model.")
    ] = None,
) -> None:
    """Draft a rule from plain words with the site's language model; confirm to save it."""
    from safewatch.config.llm import with_overrides
    from safewatch.config.loader import load_site
    from safewatch.llm import (
        DraftError,
        LLMNotConfigured,
        OpenAIChatClient,
        RuleDrafter,
        RuleWorkspace,
        save_draft,
    )

    site = load_site(config)
    settings = with_overrides(site.config.llm, base_url=base_url, model=model)
    if settings is None:
        raise LLMNotConfigured(
            f"no language model configured: add an `llm:` block to {config} (docs/llm.md) or "
            "pass --base-url and --model; or write the rule by hand (docs/rules.md) and check "
            "it with `safewatch rules validate`"
        )
    workspace = RuleWorkspace(site.config, rules, target)
    with OpenAIChatClient.from_config(settings) as client:
        drafter = RuleDrafter(client, max_repairs=settings.max_repairs)
        result = drafter.draft(request, workspace, allow_modify=allow_modify or ())

    rounds = f"{result.rounds} round{'s' if result.rounds != 1 else ''}"
    out.print(f"Draft for {result.target} (model {result.model}, {rounds}):", highlight=False)
    out.print(result.yaml.rstrip("\n"), highlight=False, markup=False, soft_wrap=True)
    if not result.valid:
        for error in result.errors:
            out.print(f"  invalid: {error}", highlight=False, markup=False, soft_wrap=True)
        raise DraftError(
            f"no valid draft after {rounds}; nothing was saved: reword the request, or write "
            "the rule by hand (docs/rules.md)"
        )
    out.print("\nDiff:", highlight=False)
    out.print(result.diff.rstrip("\n"), highlight=False, markup=False, soft_wrap=True)
    out.print("\nIn plain words:", highlight=False)
    for sentence in result.explanation:
        out.print(f"  {sentence}", highlight=False, markup=False, soft_wrap=True)
    for warning in result.warnings:
        out.print(f"  check: {warning}", highlight=False, markup=False, soft_wrap=True)
    if result.assumptions:
        out.print(
            f"  the model says: {result.assumptions}", highlight=False, markup=False, soft_wrap=True
        )

    if not yes:
        if not sys.stdin.isatty():
            out.print("\nnot saved (no terminal to confirm on; rerun with --yes to save)")
            return
        if not typer.confirm(f"\nSave to {result.target}?", default=False):
            out.print("not saved")
            return
    from safewatch.api.auth.store import AuthStore
    from safewatch.incidents.site_storage import open_site_storage

    storage = open_site_storage(site)
    try:
        saved = save_draft(
            result, workspace, actor=_actor(), audit=AuthStore(storage.engine), source="cli"
        )
    finally:
        storage.close()
    out.print(
        f"[green]saved[/green] {saved.target} (recorded in the site's audit log)", highlight=False
    )
