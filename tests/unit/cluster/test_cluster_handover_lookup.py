"""The lookup a claim after a graceful handover makes under the chain lock
(:func:`safewatch.cluster.takeover.handed_over`) reads the chain entries written since the
release by their time (index ``ix_chain_entries_at``, migration ``0013``), not every entry of the
camera's history. Real PostgreSQL: a camera with 4000 past incidents (three entries each), its
statistics analysed, and the plan PostgreSQL picks for the lookup's own statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from safewatch.cluster.takeover import handed_over

HISTORY = 4000
T0 = 1_700_000_000.0


def test_the_handover_lookup_reads_the_chain_by_time(pg_engine: Engine) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO incidents (id, camera_id, rule_id, rule_kind, severity, track_ids,"
            " started_at, ended_at, peak_confidence, message, status, created_at, updated_at)"
            " SELECT 'i' || n, 'cam-0', 'helmet', 'ppe', 'high', '[1]', %(t0)s + n * 60,"
            " %(t0)s + n * 60 + 30, 0.6, 'm', 'open', %(t0)s, %(t0)s"
            " FROM generate_series(1, %(n)s) AS n",
            {"t0": T0, "n": HISTORY},
        )
        connection.exec_driver_sql(
            "INSERT INTO chain_entries (seq, at, kind, incident_id, detail, prev_hash, hash)"
            " SELECT n * 3 + k, %(t0)s + n * 60 + k * 10,"
            " (ARRAY['incident.opened', 'incident.updated', 'incident.closed'])[k + 1],"
            " 'i' || n, '{}', '', '' FROM generate_series(1, %(n)s) AS n,"
            " generate_series(0, 2) AS k",
            {"t0": T0, "n": HISTORY},
        )
        connection.exec_driver_sql("ANALYZE incidents")
        connection.exec_driver_sql("ANALYZE chain_entries")
    since = T0 + (HISTORY - 1) * 60  # the last two incidents' entries
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "chain_entries" in statement:
            seen.append((statement, parameters))

    event.listen(pg_engine, "before_cursor_execute", capture)
    try:
        with Session(pg_engine) as session:
            assert handed_over(session, "cam-0", since) == ()
    finally:
        event.remove(pg_engine, "before_cursor_execute", capture)
    assert len(seen) == 1
    statement, parameters = seen[0]
    with pg_engine.connect() as connection:
        plan = "\n".join(
            row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        )
    assert "ix_chain_entries_at" in plan, plan
