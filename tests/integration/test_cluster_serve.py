"""``safewatch serve --cluster``: three analyzer processes share six looping file cameras.

One real PostgreSQL (leases, fencing, incidents), real analyzer processes started the way
``deploy/`` starts them, and a short lease (3 s) so failures show within seconds. One scenario
runs the cluster through its events in order (each would otherwise pay the start-up of three
analyzers again, on a busy 2-core CI machine):

1. join: three analyzers share the six cameras 2/2/2; a rule edit reaches all three;
2. ``kill -9`` of one (a leave): its cameras are analysed elsewhere within the bound (time from
   the kill to each camera's first frame analysed by its new owner), then 3/3;
3. ``SIGSTOP`` of one past its lease, then ``SIGCONT``: its cameras move meanwhile, its late
   writes are refused by the fence (or it writes nothing after the expiry), it stops its cameras
   and rejoins (a join): 3/3 again;
4. ``SIGTERM`` of one: its cameras move with a short gap, their incidents closed normally (not
   as abandoned or lost);
5. the last one stops with SIGTERM.

Then, from the database: at most one open incident per (camera, rule, subject) at any instant,
none left open, the fenced analyzer's incidents closed once by their new owner, and ``safewatch
verify`` exits 0. Bounds are generous (the machine is shared): the figures the issue asks for
come from ``bench/cluster_failover.py``. Decode workers of ``serve --cluster`` start from a fork
server: a spawned one took 6-14 s to its first frame at load 20, which the bounds would otherwise
have to absorb.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_serve_support import (
    CLIP,
    MODEL,
    Analyzer,
    FrameSampler,
    alert_rows,
    balanced,
    closing_entries,
    entries_after,
    incidents,
    overlapping_open,
    safewatch,
    wait_for,
    write_cluster_site,
)
from sqlalchemy import text

from alert_servers import WebhookReceiver
from assets import asset
from db_servers import PostgresServer
from safewatch.storage import create_engine_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

CAMERAS = 6
LEASE = 3.0
FAILOVER_BOUND = 30.0
"""Seconds from a kill to a camera analysed elsewhere (lease 3 s; about 5-8 s measured)."""
RULES_BOUND = 15.0
"""Seconds for a rule edit to be applied by every analyzer (the issue's 5 s; watcher debounce
and a reload under load)."""
DRAIN_GAP_BOUND = 20.0
"""Seconds without analysis of a drained camera: the leases move within half a second, the rest
is the new owner starting a decode process and its first inference (3-10 s at load 14-25 on
2 cores); the issue's 2 s is measured by the bench on a quiet machine."""


def clip_outcomes(url: str, folder: Path, incident_ids: set[str]) -> dict[str, list[str]]:
    """Which of ``incident_ids`` have a clip recovered by a new owner (chained
    ``clip.recovered``), a clip chained ``clip.unrecoverable``, or neither a clip nor a reason."""
    engine = create_engine_for(url, folder)
    try:
        with engine.connect() as connection:
            kinds = connection.execute(
                text("SELECT incident_id, kind FROM chain_entries WHERE kind LIKE 'clip.%'")
            ).all()
            clips = dict(connection.execute(text("SELECT id, clip FROM incidents")).all())
    finally:
        engine.dispose()
    out: dict[str, list[str]] = {"clip.recovered": [], "clip.unrecoverable": [], "neither": []}
    for incident_id, kind in kinds:
        if incident_id in incident_ids:
            out[str(kind)].append(str(incident_id))
    explained = {*out["clip.recovered"], *out["clip.unrecoverable"]}
    out["neither"] = sorted(i for i in incident_ids if clips.get(i) is None and i not in explained)
    return out


@pytest.fixture
def cluster_db(pg_server: PostgresServer) -> Iterator[str]:
    with pg_server.fresh_schema() as url:
        yield url


def test_three_analyzers_share_cameras_through_kill_freeze_and_drain(
    cluster_db: str, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(b"cluster-secret").start()
    alerts = {
        "channels": {
            "hook": {"type": "webhook", "url": f"{receiver.url}/in", "secret": "cluster-secret"}
        },
        "routes": [{"id": "all", "channels": ["hook"], "events": ["opened", "closed"]}],
    }
    site = write_cluster_site(
        tmp_path,
        cluster_db,
        asset(CLIP),
        asset(MODEL),
        cameras=CAMERAS,
        lease_seconds=LEASE,
        alerts=alerts,
    )
    upgraded = safewatch("db", "upgrade", "--config", str(site))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    engine = create_engine_for(cluster_db, tmp_path)
    analyzers = {name: Analyzer(name, site, tmp_path) for name in ("a1", "a2", "a3")}
    sampler = FrameSampler(analyzers.values()).start()
    everyone = list(analyzers.values())
    try:
        for analyzer in analyzers.values():
            analyzer.start()

        def diagnose() -> str:
            return "\n".join(f"--- {a.name}\n{a.tail()}" for a in everyone)

        # 1. join: 2/2/2, every camera analysed once
        live = ["a1", "a2", "a3"]
        try:
            wait_for(lambda: balanced(sampler.owners(), live, CAMERAS), 150, "2/2/2 at the start")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{diagnose()}") from None
        wait_for(lambda: any(r["ended_at"] is None for r in incidents(engine)), 60, "an incident")
        # a rule edit reaches every analyzer (each watches the same rules folder)
        before = {a.name: a.rule_reloads() for a in everyone}
        rules = tmp_path / "rules" / "view.yaml"
        edited_at = time.monotonic()
        rules.write_text(rules.read_text().replace("grace: 4s", "grace: 5s"))
        wait_for(
            lambda: all(a.rule_reloads() > before[a.name] for a in everyone),
            RULES_BOUND,
            "every analyzer to apply the edited rules",
        )
        rules_seconds = time.monotonic() - edited_at

        # 2. kill -9: its cameras analysed elsewhere within the bound, then 3/3
        victim = analyzers["a1"]
        lost = set(sampler.owners()["a1"])
        killed_at = time.monotonic()
        victim.signal(signal.SIGKILL)
        victim.wait(30)
        sampler.forget("a1")
        live = ["a2", "a3"]
        failover = {
            camera: wait_for(
                lambda camera=camera: sampler.first_elsewhere(camera, killed_at, "a1"),
                FAILOVER_BOUND + 30,
                f"camera {camera} analysed again",
            )
            - killed_at
            for camera in lost
        }
        assert max(failover.values()) <= FAILOVER_BOUND, (failover, diagnose())
        wait_for(lambda: balanced(sampler.owners(), live, CAMERAS), 60, "3/3 after the kill")

        # 3. SIGSTOP past the lease, SIGCONT: fenced, stops its cameras, rejoins
        frozen = analyzers["a2"]
        moved = set(sampler.owners()["a2"])
        open_before = {
            r["id"] for r in incidents(engine) if r["ended_at"] is None and r["camera_id"] in moved
        }
        frozen.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        for camera in moved:
            wait_for(
                lambda camera=camera: sampler.first_elsewhere(camera, stopped_at, "a2"),
                FAILOVER_BOUND + 30,
                f"frozen a2's camera {camera} analysed elsewhere",
            )
        time.sleep(LEASE)  # well past its lease
        frozen.signal(signal.SIGCONT)
        wait_for(
            lambda: all(f"camera {c} released (lost)" in frozen.tail(400) for c in moved),
            30,
            "a2 to stop the cameras it lost",
        )
        assert frozen.alive()
        fenced = frozen.fenced()
        closings = closing_entries(engine)
        for incident_id in open_before:
            assert incident_id in closings, f"{incident_id} of the frozen owner left open"
            seq, detail = closings[incident_id]
            assert "analyzer_lost" in str(detail), detail
            # refused (fenced > 0) or not even tried: nothing of a2 after its new owner's close
            later = [k for k in entries_after(engine, incident_id, seq) if k.startswith("incident")]
            assert later == [], (incident_id, later)
        wait_for(lambda: balanced(sampler.owners(), live, CAMERAS), 90, "a2 rejoined: 3/3")
        # the clips the killed and the frozen analyzers were writing: finished by the cameras'
        # next owners (the frozen one's once it let them go), none left in the shared spool
        spool = tmp_path / "shared-evidence" / ".clips-in-progress"
        lost_ids = {i for i, (_, d) in closing_entries(engine).items() if "analyzer_lost" in str(d)}
        wait_for(
            lambda: not any((spool / f"{i}.mp4.part").exists() for i in lost_ids),
            90,
            "the lost analyzers' clips finished by the new owners",
        )

        # 4. SIGTERM drain: its cameras move with a short gap, incidents closed normally
        drained = analyzers["a3"]
        leaving = set(sampler.owners()["a3"])
        open_drained = {
            r["id"]
            for r in incidents(engine)
            if r["ended_at"] is None and r["camera_id"] in leaving
        }
        term_at = time.monotonic()
        drained.signal(signal.SIGTERM)
        assert drained.wait(60) == 0, drained.tail()
        gaps = {}
        for camera in leaving:
            first = wait_for(
                lambda camera=camera: sampler.first_elsewhere(camera, term_at, "a3"),
                30,
                f"drained camera {camera} analysed elsewhere",
            )
            last = sampler.last_growth_of("a3", camera) or term_at
            gaps[camera] = first - last
        assert max(gaps.values()) <= DRAIN_GAP_BOUND, (gaps, diagnose())
        log = drained.tail(400)
        assert all(f"camera {c} released (drain)" in log for c in leaving), log
        assert "released (lost)" not in log.split("stopping (finishing")[-1], log
        closings = closing_entries(engine)
        for incident_id in open_drained:
            assert incident_id in closings, f"{incident_id} of the drained owner left open"
            _, detail = closings[incident_id]
            assert not detail.get("abandoned") and "analyzer_lost" not in str(detail), detail
        wait_for(lambda: balanced(sampler.owners(), ["a2"], CAMERAS), 60, "a2 has all six")

        # 5. the last one stops
        frozen.signal(signal.SIGTERM)
        assert frozen.wait(60) == 0, frozen.tail()
    finally:
        sampler.stop()
        for analyzer in everyone:
            analyzer.ensure_gone()
        receiver.stop()
    rows = incidents(engine)
    queued = alert_rows(engine, "hook")
    engine.dispose()
    # Alerts: one per incident and event, whoever owned the camera (a takeover's closed alert is
    # queued by the new owner, never also by the old one); what the outbox marks delivered reached
    # the receiver, under the key it was queued with (a retry after a crash between send and mark
    # reuses its key, which receivers deduplicate).
    per_event: dict[tuple[str, str], int] = {}
    for alert in queued:
        per_event[(alert["incident_id"], alert["event"])] = (
            per_event.get((alert["incident_id"], alert["event"]), 0) + 1
        )
    assert [k for k, n in per_event.items() if n > 1] == [], "an alert was queued twice"
    received = {r.headers.get("idempotency-key") for r in receiver.accepted()}
    delivered = {a["key"] for a in queued if a["status"] == "delivered"}
    assert delivered, "the cluster's dispatchers delivered no alert"
    assert delivered <= received, delivered - received
    assert received <= {a["key"] for a in queued}, "an alert the outbox never queued arrived"
    assert {i for i, e in per_event if e == "opened"} == {r["id"] for r in rows}
    print(f"rules applied everywhere in {rules_seconds:.1f} s; "
          f"failover s {sorted(round(v, 1) for v in failover.values())}; drain gaps s "
          f"{sorted(round(v, 1) for v in gaps.values())}; fenced writes {fenced:g}; "
          f"{len(rows)} incidents; {len(delivered)} of {len(queued)} alerts delivered")  # fmt: skip
    assert rows, "the clip has people in view: incidents must have opened"
    assert overlapping_open(rows) == []
    assert [r["id"] for r in rows if r["ended_at"] is None] == [], "no orphan left open"
    # each incident closed as analyzer_lost got its clip, or the chain says why not. Whether any
    # clip was still being written at the kill depends on timing (a clip ends 10-13 s after its
    # incident opened, the incident may run on): that a clip cut by kill -9 is recovered is
    # checked deterministically by test_cluster_clips.py.
    recovered = clip_outcomes(cluster_db, tmp_path, lost_ids)
    print(
        f"{len(lost_ids)} incidents closed as analyzer_lost: {len(recovered['clip.recovered'])} "
        f"clips recovered by the new owners, {len(recovered['clip.unrecoverable'])} unusable"
    )
    assert not recovered["neither"], recovered
    verify = safewatch("verify", "--config", str(site))
    assert verify.returncode == 0, verify.stdout + verify.stderr
