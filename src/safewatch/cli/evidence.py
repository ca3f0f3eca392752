"""``safewatch evidence``: the originals' key, and the one logged way to reveal an original.

Evidence is stored with heads hidden; with ``evidence.keep_originals`` the unblurred still and clip
are kept too, encrypted with a key from the environment. ``reveal`` decrypts them for one incident
to a private folder, after recording who asked and why in the reveal log (see
:mod:`safewatch.incidents.sealed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safewatch.cli.app import app, out

__all__ = ["evidence_app"]

evidence_app = typer.Typer(
    help="Encrypted evidence originals: make a key, reveal an incident's originals.",
    no_args_is_help=True,
)
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("new-key")
def new_key() -> None:
    """Print a new random key for SAFEWATCH_EVIDENCE_KEY (keep it outside the site file)."""
    from safewatch.incidents.sealed import generate_key

    out.print(generate_key(), highlight=False)


@evidence_app.command("reveal")
def reveal_originals(
    incident: Annotated[str, typer.Argument(help="Incident id.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    reason: Annotated[
        str, typer.Option(help="Why (a case or request number); recorded in the reveal log.")
    ],
    actor: Annotated[
        str | None, typer.Option(help="Who reveals; recorded (default: the OS user).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the plaintext (default: a private temp one)."),
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(
            help="Reveal log (default: reveal-log.jsonl in the evidence folder; with evidence "
            "in S3, in the local evidence_dir)."
        ),
    ] = None,
) -> None:
    """Decrypt an incident's unblurred still and clip; every attempt is logged."""
    # Checked before anything is read or logged: reveal() refuses an empty reason or actor with
    # a ValueError, which reached the user as a traceback.
    if not reason.strip():
        raise typer.BadParameter(
            "a reason is required (a case or request number)", param_hint="--reason"
        )
    if actor is not None and not actor.strip():
        raise typer.BadParameter(
            "must name who reveals (or leave it out: the OS user)", param_hint="--actor"
        )
    from safewatch.config.loader import load_site
    from safewatch.errors import NotFound
    from safewatch.incidents.recorder import ORIGINAL_CLIP_SUFFIX, ORIGINAL_STILL_SUFFIX
    from safewatch.incidents.sealed import EvidenceKey, log_refusal, reveal
    from safewatch.incidents.site_storage import open_site_storage, reveal_log

    site = load_site(config)
    key = EvidenceKey.from_env(site.config.evidence.key_env)
    storage = open_site_storage(site)
    try:
        store = storage.evidence
        journal = log if log is not None else reveal_log(site, store)
        try:
            found = storage.repository.get(incident)
            sealed = [
                store.key_for(
                    found.id, camera_id=found.camera_id, at=found.started_at, suffix=suffix
                )
                for suffix in (ORIGINAL_STILL_SUFFIX, ORIGINAL_CLIP_SUFFIX)
            ]
            present = [name for name in sealed if store.backend.stat(name) is not None]
            if not present:
                raise NotFound("sealed original of incident", incident)
        except NotFound as exc:  # a refusal is logged like reveal() logs its own
            log_refusal(journal, incident, exc, key=key, actor=actor, reason=reason)
            raise
        for name in present:
            path = reveal(
                store, name, key=key, actor=actor, reason=reason, out_dir=out_dir, log_path=journal
            )
            out.print(f"revealed {name} -> {path}", highlight=False, soft_wrap=True)
    finally:
        storage.close()
