"""``safewatch verify``: check incidents and evidence against the tamper-evidence chain."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.advice import command_for_site
from safewatch.cli.app import app, err, out

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["verify"]

_HASH = re.compile(r"[0-9a-f]{64}")


def _require_current_schema(engine: Engine, shown: str, config: Path) -> None:
    """Refuse a database that is not at this safewatch's schema revision, saying what to run.

    The chain's queries on an older schema failed with "no such column" (or, on an empty
    database, "no such table"), which says nothing of the cause; verify never migrates.

    Raises:
        StorageError: The schema is older, newer, or missing.
    """
    from safewatch.errors import StorageError
    from safewatch.storage.migrate import current_revision, head_revision, history

    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is not None and current not in {r.id for r in history()}:
        raise StorageError(
            f"database {shown} is at schema revision {current}, newer than this safewatch knows "
            f"(head {head}): verify it with the safewatch that upgraded it"
        )
    raise StorageError(
        f"database {shown} is at schema revision {current or 'none'}, this safewatch reads "
        f"{head}: run `{command_for_site('db upgrade', config)}` first "
        "(verify never migrates it)"
    )


@app.command()
def verify(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file.")],
    evidence: Annotated[
        bool, typer.Option(help="Hash every evidence file (--no-evidence: chain and table only).")
    ] = True,
    expect_hash: Annotated[
        str | None,
        typer.Option(help="A chain hash noted earlier (a previous verify's head); it must remain."),
    ] = None,
    witness_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--witness",
            help="A chain witness kept outside the site: a witness alert saved from a mailbox "
            "(.eml or text), a witness webhook's JSON body, or a copy of "
            "chain-witness/latest.json. Its entry must still be in the chain. Repeatable.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Walk the chain; report edited or deleted incidents and evidence. Exit 1 on any problem.

    The latest chain witness in the evidence store (written by ``serve``) is checked too, and the
    stored history's witness of the highest entry, so the newest entries cannot be cut off
    unnoticed even without ``--expect-hash`` (nor by putting back an older ``latest.json``);
    ``--witness`` adds witnesses the alert channels delivered (``alerts.witness``), which
    someone who controls the server and its evidence store cannot take back.
    """
    from safewatch.config.loader import load_site
    from safewatch.incidents.chain import verify_chain
    from safewatch.incidents.site_storage import open_evidence_backend
    from safewatch.incidents.witness import (
        ChainWitness,
        parse_witness,
        read_highest_witness,
        read_latest_witness,
    )
    from safewatch.storage import create_engine_for, resolve_url
    from safewatch.storage.engine import shown_url

    if expect_hash is not None:
        # A typo, a truncated copy or an upper-case paste is not the chain rewritten: it read as
        # anchor_not_found, a tamper alarm with exit 1.
        expect_hash = expect_hash.strip().lower()
        if not _HASH.fullmatch(expect_hash):
            raise typer.BadParameter(
                "must be a chain hash: 64 hex digits, as verify prints after 'head: entry N, hash'",
                param_hint="--expect-hash",
            )
    kept: list[tuple[ChainWitness, str]] = []
    for path in witness_files or ():
        try:
            kept.append((parse_witness(path.read_bytes()), str(path)))
        except (OSError, ValueError) as error:
            err.print(f"[red]error[/red]: --witness {path}: {error}", highlight=False)
            raise typer.Exit(2) from None
    site = load_site(config)
    storage = site.config.storage
    # Read-only, as backtest opens it: verify must leave the evidence of tampering as it found
    # it. Opened read-write it created a missing SQLite file (then failed on its missing tables
    # with raw SQL errors) and switched a database's journal mode.
    url = storage.database
    engine = create_engine_for(url, site.base_dir, read_only=True)
    try:
        _require_current_schema(engine, shown_url(resolve_url(url, site.base_dir)), config)
        store = open_evidence_backend(storage, site.base_dir)
        witness = read_latest_witness(store)
        highest = read_highest_witness(store)
        history: list[tuple[ChainWitness, str]] = []
        if highest is not None and (witness is None or highest[0] != witness):
            history.append((highest[0], f"{store.location}/{highest[1]}"))
        report = verify_chain(
            engine,
            store if evidence else None,
            expect_hash=expect_hash,
            witness=witness,
            witness_location=store.location,
            more_witnesses=[*history, *kept],
        )
    finally:
        engine.dispose()
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "incidents": report.incidents,
                    "evidence_checked": report.evidence_checked,
                    "evidence_removed": report.evidence_removed,
                    "head": {"seq": report.head_seq, "hash": report.head_hash},
                    "witness": None
                    if witness is None
                    else {"seq": witness.seq, "hash": witness.hash, "time": witness.when},
                    "witness_history": [
                        {"object": where, "seq": w.seq, "hash": w.hash, "time": w.when}
                        for w, where in history
                    ],
                    "witnesses_given": [
                        {"file": where, "seq": w.seq, "hash": w.hash, "time": w.when}
                        for w, where in kept
                    ],
                    "problems": [
                        {
                            "kind": str(p.kind),
                            "message": p.message,
                            "seq": p.seq,
                            "incident_id": p.incident_id,
                            "key": p.key,
                        }
                        for p in report.problems
                    ],
                    "notices": [
                        {"kind": str(p.kind), "message": p.message, "key": p.key}
                        for p in report.notices
                    ],
                }
            )
        )
    else:
        for problem in report.problems:
            err.print(
                f"[red]{problem.kind}[/red]: {problem.message}", highlight=False, soft_wrap=True
            )
        for notice in report.notices:
            err.print(
                f"[yellow]note[/yellow]: {notice.kind}: {notice.message}",
                highlight=False,
                soft_wrap=True,
            )
        checked = (
            f"{report.entries} chain entries, {report.incidents} incidents, "
            f"{report.evidence_checked} evidence files ({report.evidence_removed} removed by "
            "retention)"
        )
        out.print(f"checked {checked}", highlight=False, soft_wrap=True)
        out.print(
            f"head: entry {report.head_seq}, hash {report.head_hash}",
            highlight=False,
            soft_wrap=True,
        )
        if witness is None:
            out.print("witness: none yet (serve writes one)", highlight=False, soft_wrap=True)
        else:
            out.print(
                f"witness: entry {witness.seq} of {witness.when} in {store.location}",
                highlight=False,
                soft_wrap=True,
            )
        for given, where in (*history, *kept):
            out.print(
                f"witness: entry {given.seq} of {given.when} in {where}",
                highlight=False,
                soft_wrap=True,
            )
        if report.ok:
            out.print("[green]ok[/green]: no tampering found", soft_wrap=True)
        else:
            out.print(f"[red]{len(report.problems)} problem(s)[/red]", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
