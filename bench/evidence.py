"""Evidence benchmarks, one section per concern; results merge into ``bench/results/evidence.json``.

Sections (each a function registered in :data:`SECTIONS`, writing its own key of the JSON, so one
section can be re-run without losing the others' figures):

* ``incident_writes``: incident upserts per second on SQLite and PostgreSQL with the
  tamper-evidence chain on (every write takes the chain head and appends an entry), against a plain
  upsert of the same rows without the chain; plus ``safewatch verify``'s chain walk speed.
* ``ring_buffer``, ``clip_encode``, ``analysis_path``: the evidence frame buffer's memory, clip
  encoding speed and what evidence costs the analysis thread (in :mod:`bench.evidence_media`).

Run: ``python -m bench.evidence [--section NAME ...]``. PostgreSQL is a throwaway server started
from Debian's binaries with its default durability (fsync and synchronous commit on); pass
``--pg-url`` to use another one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from bench import evidence_media
from bench._common import RESULTS
from safewatch.domain import Incident, Severity, incident_id
from safewatch.storage import IncidentRepository, IncidentRow, create_engine_for
from safewatch.storage.incident_repository import _merge, _values
from safewatch.storage.migrate import upgrade

RESULT_FILE = RESULTS / "evidence.json"

Section = Callable[[argparse.Namespace], dict[str, Any]]
SECTIONS: dict[str, Section] = {}


def section(name: str) -> Callable[[Section], Section]:
    """Register a benchmark section under ``name`` (its key in the JSON)."""

    def register(function: Section) -> Section:
        SECTIONS[name] = function
        return function

    return register


def merge_results(updates: dict[str, Any]) -> Path:
    """Write the sections just run into ``evidence.json``, keeping every other section."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if RESULT_FILE.exists():
        data = json.loads(RESULT_FILE.read_text())
    data.update(updates)
    RESULT_FILE.write_text(json.dumps(data, indent=2) + "\n")
    return RESULT_FILE


# -- incident writes ----------------------------------------------------------------------------

T0 = 1_800_000_000.0


def _incidents(count: int, run: int) -> list[Incident]:
    cameras = [f"cam-{i}" for i in range(8)]
    return [
        Incident(
            id=incident_id(cameras[i % 8], "hardhat-required", i, T0 + run * 1e6 + i),
            camera_id=cameras[i % 8],
            rule_id="hardhat-required",
            rule_kind="ppe",
            severity=Severity.HIGH,
            track_ids=(i,),
            started_at=T0 + run * 1e6 + i,
            ended_at=None,
            peak_confidence=0.6,
            message=f"person #{i} without hardhat",
            snapshot=f"{cameras[i % 8]}/2027-01-15/{i}.jpg",
        )
        for i in range(count)
    ]


def _closed(incident: Incident) -> Incident:
    return dataclasses.replace(incident, ended_at=incident.started_at + 7.5, peak_confidence=0.85)


def _chained(engine: Engine, incidents: list[Incident]) -> float:
    """Open then close each incident through the repository; upserts per second."""
    repo = IncidentRepository(engine)
    start = time.perf_counter()
    for incident in incidents:
        repo.upsert(incident)
    for incident in incidents:
        repo.upsert(_closed(incident))
    return 2 * len(incidents) / (time.perf_counter() - start)


def _plain(engine: Engine, incidents: list[Incident]) -> float:
    """The same merges, one transaction each, without the chain (the baseline); the rows are
    deleted afterwards (untimed) so the chained rows verify alone."""
    start = time.perf_counter()
    for batch in (incidents, [_closed(i) for i in incidents]):
        for incident in batch:
            values = _values(incident, time.time())
            with Session(engine) as session, session.begin():
                row = session.get(IncidentRow, incident.id)
                if row is None:
                    session.add(IncidentRow(**values))
                else:
                    _merge(row, values)
    rate = 2 * len(incidents) / (time.perf_counter() - start)
    with engine.begin() as connection:
        ids = [i.id for i in incidents]
        connection.execute(delete(IncidentRow).where(IncidentRow.id.in_(ids)))
    return rate


def _verify_rate(engine: Engine, rounds: int = 3) -> tuple[int, float]:
    """Chain entries ``verify_chain`` walks per second (no evidence files), median of rounds."""
    from safewatch.incidents.chain import verify_chain

    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        report = verify_chain(engine, None)
        assert report.ok, report.problems
        rates.append(report.entries / (time.perf_counter() - start))
    return report.entries, statistics.median(rates)


def _measure(url: str, base: Path, count: int, rounds: int) -> dict[str, Any]:
    engine = create_engine_for(url, base)
    upgrade(engine)
    chained, plain = [], []
    try:
        for run in range(rounds):  # alternate so machine noise hits both alike
            plain.append(_plain(engine, _incidents(count, 2 * run)))
            chained.append(_chained(engine, _incidents(count, 2 * run + 1)))
        entries, verify_rate = _verify_rate(engine)
    finally:
        engine.dispose()
    return {
        "upserts_per_s_chained": round(statistics.median(chained), 1),
        "upserts_per_s_plain": round(statistics.median(plain), 1),
        "chain_cost": round(statistics.median(plain) / statistics.median(chained), 2),
        "verify_entries_per_s": round(verify_rate, 1),
        "chain_entries_verified": entries,
    }


@section("incident_writes")
def incident_writes(args: argparse.Namespace) -> dict[str, Any]:
    """Upserts/s on SQLite and PostgreSQL, chained vs plain (see the module docstring)."""
    count, rounds = args.incidents, args.rounds
    result: dict[str, Any] = {
        "incidents": count,
        "upserts_per_incident": 2,
        "rounds": rounds,
        "method": "each incident upserted open, then closed; one transaction per upsert; "
        "one writer thread; median of rounds; plain = same ORM merge without the chain",
    }
    with tempfile.TemporaryDirectory() as folder:
        result["sqlite"] = {
            "settings": "WAL, synchronous=NORMAL (safewatch's pragmas), local disk",
            **_measure(f"sqlite:///{folder}/bench.db", Path(folder), count, rounds),
        }
    server = None
    url = args.pg_url
    if url is None:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from db_servers import PostgresServer, postgres_unavailable

        reason = postgres_unavailable()
        if reason is not None:
            result["postgresql"] = {"skipped": reason}
            return result
        server = PostgresServer.start(durable=True)
        url = server.url()
    try:
        result["postgresql"] = {
            "settings": "throwaway local server, default fsync/synchronous_commit, TCP loopback"
            if server is not None
            else "given by --pg-url",
            **_measure(url, Path("."), count, rounds),
        }
    finally:
        if server is not None:
            server.stop()
    return result


def _print_incident_writes(result: dict[str, Any]) -> None:
    print(f"incident writes: {result['incidents']} incidents x 2 upserts, median of rounds")
    print(f"{'engine':<12}{'chained/s':>12}{'plain/s':>12}{'cost':>8}{'verify/s':>12}")
    for engine in ("sqlite", "postgresql"):
        row = result.get(engine, {})
        if "skipped" in row:
            print(f"{engine:<12}skipped: {row['skipped']}")
            continue
        print(
            f"{engine:<12}{row['upserts_per_s_chained']:>12.0f}{row['upserts_per_s_plain']:>12.0f}"
            f"{row['chain_cost']:>7.2f}x{row['verify_entries_per_s']:>12.0f}"
        )


PRINTERS: dict[str, Callable[[dict[str, Any]], None]] = {"incident_writes": _print_incident_writes}
SECTIONS.update(evidence_media.SECTIONS)
PRINTERS.update(evidence_media.PRINTERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", action="append", choices=sorted(SECTIONS))
    parser.add_argument("--incidents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", help="SQLAlchemy URL of a PostgreSQL database to use")
    args = parser.parse_args()
    results = {}
    for name in args.section or sorted(SECTIONS):
        results[name] = SECTIONS[name](args)
        PRINTERS.get(name, lambda r: print(json.dumps(r, indent=2)))(results[name])
    print(f"wrote {merge_results(results)}")


if __name__ == "__main__":
    main()
