"""Audit jobs under ``serve --cluster``: submitted to one API node, run by an analyzer process
with a free slot, followed (progress, result) and cancelled from another API node.

Real parts: one PostgreSQL (the job table), two ``safewatch serve --cluster --role analyzer``
processes (their cameras disabled: they only take jobs), two API nodes in this process, each a
dashboard with its own database connections wired as ``serve --cluster`` wires it (that a served
``--role api`` node is wired so is checked in test_cluster_bus_serve.py), sharing only the
database and the evidence folder declared shared. The claimer is killed with ``kill -9`` in the
middle of the job: the other analyzer claims it after the heartbeat expiry (lease 2 s) and
finishes it.

Also here, against the same real PostgreSQL without serve processes: a claimer frozen
(``SIGSTOP``) past the expiry writes nothing once resumed; a job whose analyzer was lost three
times is failed; the API nodes' periodic pass (interrupted uploads, orphaned local copies).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_serve_support import CLIP, MODEL, Analyzer, write_cluster_site
from sqlalchemy import text
from sqlalchemy.orm import Session

from api_support import add_users, client_for, login, wait_until
from assets import asset
from db_servers import PostgresServer
from safewatch.api.cluster_jobs import install_cluster_jobs
from safewatch.api.dashboard import Dashboard, DashboardSettings
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage
from safewatch.runtime.api_process import open_storage
from safewatch.storage import create_engine_for
from safewatch.storage.migrate import upgrade

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def cluster_db(pg_server: PostgresServer) -> Iterator[str]:
    with pg_server.fresh_schema() as url:
        yield url


def job_site(folder: Path, database: str) -> Path:
    """One camera (disabled: the analyzers only run jobs), 2 frames/s, lease 2 s."""
    path = write_cluster_site(
        folder, database, asset(CLIP), asset(MODEL), cameras=1, lease_seconds=2.0, fps=2
    )
    site: dict[str, Any] = yaml.safe_load(path.read_text())
    site["cameras"]["cam1"]["enabled"] = False
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


@contextlib.contextmanager
def api_node(site_path: Path, **settings: Any) -> Iterator[Dashboard]:
    """An API node's dashboard with the cluster's jobs (as ``serve --cluster`` wires it)."""
    site = load_site(site_path)
    storage = open_storage(site, cluster=True)
    dashboard = Dashboard.create(
        lambda: site, site_path.parent / "rules", storage, settings=DashboardSettings(**settings)
    )
    jobs = install_cluster_jobs(dashboard, site.config.cluster.lease_seconds)
    try:
        yield dashboard
    finally:
        jobs.stop()
        storage.close()


def test_a_job_runs_on_an_analyzer_survives_its_kill_and_is_seen_from_every_node(
    cluster_db: str, tmp_path: Path
) -> None:
    site = job_site(tmp_path, cluster_db)
    engine = create_engine_for(cluster_db, tmp_path)
    upgrade(engine)  # as `safewatch db upgrade` (in this process: 3 s less)
    analyzers = {name: Analyzer(name, site, tmp_path).start() for name in ("a1", "a2")}

    def logs() -> str:
        return "\n".join(f"--- {a.name}\n{a.tail()}" for a in analyzers.values())

    def claimer(job_id: str) -> tuple[str | None, int, str]:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT claimed_by, attempt, state FROM cluster_jobs WHERE id = :id"),
                {"id": job_id},
            ).one()
        return row.claimed_by, row.attempt, row.state

    try:
        with api_node(site) as node_a, api_node(site) as node_b:
            add_users(node_a)
            with client_for(node_a) as client_a, client_for(node_b) as client_b:
                headers_a = {"X-CSRF-Token": login(client_a, "operator")}
                headers_b = {"X-CSRF-Token": login(client_b, "operator")}
                submitted = client_a.post(
                    "/api/v1/audit-jobs/upload",
                    files={"video": ("yard.mp4", asset(CLIP).read_bytes(), "video/mp4")},
                    data={"camera": "cam1"},
                    headers=headers_a,
                )
                assert submitted.status_code == 202, submitted.text
                job_id = submitted.json()["id"]

                def state_on_b() -> dict[str, Any]:
                    response = client_b.get(f"/api/v1/audit-jobs/{job_id}")
                    assert response.status_code == 200, response.text
                    body: dict[str, Any] = response.json()
                    return body

                # Node B sees the job run on an analyzer, with progress.
                try:
                    running = wait_until(
                        lambda: (s := state_on_b())["frames_done"] > 0 and s, 120, 0.1
                    )
                except AssertionError:
                    raise AssertionError(f"no progress\n{logs()}") from None
                assert running["state"] == "running" and 0 < running["progress"] < 1
                assert running["frames_total"] and running["frames_total"] > 10
                victim, attempt, _ = claimer(job_id)
                assert victim in analyzers and attempt == 1

                # kill -9 of the claimer mid-job: the other analyzer claims it again and ends it.
                analyzers[victim].signal(signal.SIGKILL)
                analyzers[victim].wait(30)
                killed_at = time.monotonic()
                try:
                    done = wait_until(
                        lambda: (s := state_on_b())["state"] in ("done", "failed") and s, 180, 0.2
                    )
                except AssertionError:
                    raise AssertionError(f"not finished\n{logs()}") from None
                assert done["state"] == "done", done["message"]
                survivor, attempt, _ = claimer(job_id)
                assert survivor not in (None, victim) and attempt == 2
                print(f"finished {time.monotonic() - killed_at:.1f} s after the kill")
                assert (
                    done["progress"] == 1.0 and done["frames_done"] >= running["frames_total"] - 2
                )
                # Same list and result on both nodes; node B reads the incidents the job found.
                assert (
                    client_a.get("/api/v1/audit-jobs").json()
                    == client_b.get("/api/v1/audit-jobs").json()
                )
                found = client_b.get(f"/api/v1/audit-jobs/{job_id}/incidents")
                assert found.status_code == 200 and len(found.json()) == done["incidents"] >= 1
                still = found.json()[0]["id"]
                image = client_b.get(f"/api/v1/audit-jobs/{job_id}/incidents/{still}/still")
                assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"

                # Cancelled from node B while the survivor runs it (submitted to node A).
                second = client_a.post(
                    "/api/v1/audit-jobs/upload",
                    files={"video": ("again.mp4", asset(CLIP).read_bytes(), "video/mp4")},
                    data={"camera": "cam1"},
                    headers=headers_a,
                ).json()["id"]
                wait_until(lambda: claimer(second)[2] == "running", 60, 0.1)
                cancel = client_b.post(f"/api/v1/audit-jobs/{second}/cancel", headers=headers_b)
                assert cancel.status_code == 200, cancel.text
                wait_until(lambda: claimer(second)[2] == "cancelled", 30, 0.1)
                gone = client_b.delete(f"/api/v1/audit-jobs/{job_id}", headers=headers_b)
                assert gone.status_code == 204
                assert [j["id"] for j in client_a.get("/api/v1/audit-jobs").json()] == [second]
                assert not list((tmp_path / "shared-evidence" / "_jobs").glob(f"{job_id}*"))
    finally:
        for analyzer in analyzers.values():
            analyzer.ensure_gone()
        engine.dispose()


def test_a_backtest_given_back_by_a_stopping_analyzer_is_finished_by_another(
    cluster_db: str, tmp_path: Path
) -> None:
    """Two job runners in this process (as analyzers start them): the first stops mid-job
    (SIGTERM), the job goes back to the queue at once and the second runs it again; the
    backtest of a server video with edited rules is read back from the API node."""
    from safewatch.api.jobs import JobEnvironment
    from safewatch.cluster.jobs import JobQueue
    from safewatch.config.ruleset import load_rules
    from safewatch.runtime.job_runner import JobRunner

    site_path = job_site(tmp_path, cluster_db)
    engine = create_engine_for(cluster_db, tmp_path)
    upgrade(engine)
    site = load_site(site_path)
    storage = open_site_storage(site)
    rules = tmp_path / "rules"
    environment = JobEnvironment(
        lambda: site, lambda: load_rules(rules, site.config), rules, storage.repository
    )

    def runner(name: str) -> JobRunner:
        queue = JobQueue(engine, expiry=2.0)
        backend = storage.evidence.backend
        return JobRunner(queue, name, 1, environment, backend, tmp_path / name, poll=0.1)

    first, second = runner("r1"), runner("r2")
    clip = asset(CLIP)
    try:
        with api_node(site_path, allow_server_paths=(clip.parent,)) as node:
            add_users(node)
            with client_for(node) as client:
                headers = {"X-CSRF-Token": login(client, "operator")}
                edited = (rules / "view.yaml").read_text().replace("grace: 4s", "grace: 0s")
                submitted = client.post(
                    "/api/v1/backtests",
                    json={"path": str(clip), "camera": "cam1", "files": {"view.yaml": edited}},
                    headers=headers,
                )
                assert submitted.status_code == 202, submitted.text
                job_id = submitted.json()["id"]

                def state() -> dict[str, Any]:
                    body: dict[str, Any] = client.get(f"/api/v1/audit-jobs/{job_id}").json()
                    return body

                assert state()["state"] == "queued"
                first.start()
                wait_until(lambda: state()["frames_done"] > 0, 60, 0.05)
                asked = time.monotonic()
                first.stop()
                print(f"stop() returned after {time.monotonic() - asked:.2f} s")
                assert first.running() == [] and state()["state"] == "queued"
                assert "given back by analyzer r1" in state()["message"]
                second.start()
                done = wait_until(lambda: (s := state())["state"] in ("done", "failed") and s, 120)
                assert done["state"] == "done", done["message"]
                with engine.connect() as connection:
                    row = connection.execute(
                        text("SELECT claimed_by, attempt FROM cluster_jobs WHERE id = :id"),
                        {"id": job_id},
                    ).one()
                assert (row.claimed_by, row.attempt) == ("r2", 2)
                result = client.get(f"/api/v1/backtests/{job_id}/result")
                assert result.status_code == 200, result.text
                assert {row["rule"] for row in result.json()["summary"]["proposal"]} == {
                    "nobody-in-view-cam1"
                }
    finally:
        first.stop()
        second.stop()
        storage.close()
        engine.dispose()


def test_on_one_host_the_api_node_runs_the_job_and_cancels_it(tmp_path: Path) -> None:
    """Without ``--cluster`` a job runs in the API node that received it, as before (job.json
    in its folder); a running job cancelled there stops."""
    site = job_site(tmp_path, "sqlite:///data/safewatch.db")
    loaded = load_site(site)
    storage = open_site_storage(loaded)
    dashboard = Dashboard.create(lambda: loaded, tmp_path / "rules", storage)
    add_users(dashboard)
    try:
        with client_for(dashboard) as client:
            headers = {"X-CSRF-Token": login(client, "operator")}

            def submit() -> str:
                response = client.post(
                    "/api/v1/audit-jobs/upload",
                    files={"video": ("yard.mp4", asset(CLIP).read_bytes(), "video/mp4")},
                    data={"camera": "cam1"},
                    headers=headers,
                )
                assert response.status_code == 202, response.text
                job_id: str = response.json()["id"]
                return job_id

            def state(job_id: str) -> dict[str, Any]:
                body: dict[str, Any] = client.get(f"/api/v1/audit-jobs/{job_id}").json()
                return body

            first = submit()
            done = wait_until(lambda: state(first)["state"] in ("done", "failed"), 120, 0.2)
            assert done and state(first)["state"] == "done", state(first)["message"]
            assert (dashboard.jobs_dir() / first / "job.json").is_file()
            found = client.get(f"/api/v1/audit-jobs/{first}/incidents").json()
            assert len(found) == state(first)["incidents"] >= 1
            second = submit()
            wait_until(lambda: state(second)["frames_done"] > 0, 60, 0.05)
            cancel = client.post(f"/api/v1/audit-jobs/{second}/cancel", headers=headers)
            assert cancel.status_code == 200, cancel.text
            wait_until(lambda: state(second)["state"] == "cancelled", 30, 0.1)
            assert state(second)["frames_done"] < state(first)["frames_done"]
            again = client.post(f"/api/v1/audit-jobs/{first}/cancel", headers=headers)
            assert (again.status_code, again.json()["error"]) == (409, "conflict")
    finally:
        storage.close()


_FROZEN_CLAIMER = """
import logging, sys, time
from pathlib import Path
from safewatch.api.jobs import JobEnvironment
from safewatch.cluster.jobs import JobQueue
from safewatch.config.loader import load_site
from safewatch.config.ruleset import load_rules
from safewatch.incidents.site_storage import open_site_storage
from safewatch.runtime.api_process import open_storage
from safewatch.runtime.job_runner import JobRunner

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
site = load_site(Path(sys.argv[1]))
storage = open_site_storage(site)
rules = Path(sys.argv[1]).parent / "rules"
env = JobEnvironment(
    lambda: site, lambda: load_rules(rules, site.config), rules, storage.repository
)
queue = JobQueue(storage.engine, expiry=site.config.cluster.lease_seconds)
runner = JobRunner(queue, "frozen", 1, env, storage.evidence.backend, Path(sys.argv[2]), poll=0.1)
runner.start()
deadline = time.monotonic() + 120
while runner.finished < 1 and time.monotonic() < deadline:
    time.sleep(0.05)
runner.stop()
storage.close()
"""


def _queue_job(queue: Any, video: Path) -> str:
    from safewatch.api.jobs import AuditJob

    job = AuditJob(f"j{time.monotonic_ns() % 10**11:011d}", video.name, "cam1", "t", time.time())
    queue.insert(job)
    assert queue.queue(job.id, {"video_path": str(video)})
    return job.id


def test_a_claimer_frozen_past_expiry_writes_nothing_once_resumed(
    cluster_db: str, tmp_path: Path
) -> None:
    """A job runner in a child process (the real job code) is frozen with SIGSTOP mid-job; the
    test claims the job once the heartbeat expired; resumed, the child's progress is refused,
    it stops without writing and stores no result; its finish would be refused too."""
    from safewatch.cluster.jobs import DONE, Claim, JobLost, JobQueue, to_job

    site_path = job_site(tmp_path, cluster_db)
    engine = create_engine_for(cluster_db, tmp_path)
    upgrade(engine)
    queue = JobQueue(engine, expiry=2.0)
    job_id = _queue_job(queue, asset(CLIP))
    child = subprocess.Popen(
        [sys.executable, "-c", _FROZEN_CLAIMER, str(site_path), str(tmp_path / "frozen")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: (r := queue.row(job_id)) is not None and r.frames_done > 0, 90, 0.02)
        child.send_signal(signal.SIGSTOP)
        frozen = queue.row(job_id)
        assert frozen is not None and (frozen.claimed_by, frozen.attempt) == ("frozen", 1)
        thief = wait_until(lambda: queue.claim("thief"), 30, 0.2)  # after the 2 s expiry
        assert (thief.attempt, thief.job.state) == (2, "running")
        taken = queue.row(job_id)
        assert taken is not None and (taken.frames_done, taken.lost) == (0, 1)
        child.send_signal(signal.SIGCONT)
        output, _ = child.communicate(timeout=60)
        assert child.returncode == 0, output
        assert "stopped without writing" in output, output
        after = queue.row(job_id)
        assert after is not None
        assert (after.state, after.claimed_by, after.attempt) == ("running", "thief", 2)
        assert (after.frames_done, after.frames_total, after.result_prefix) == (
            0,
            taken.frames_total,
            None,
        )
        assert after.heartbeat_at == taken.heartbeat_at, "the resumed claimer heartbeated"
        shared = tmp_path / "shared-evidence" / "_jobs" / job_id
        assert not (shared / "a1").exists(), "the resumed claimer stored a result"
        # Its claim, had it got further: progress and finish refused, the row unchanged.
        stale = Claim(thief.job, thief.spec, 1, "frozen")
        with pytest.raises(JobLost):
            queue.progress(stale, frames_done=40)
        assert not queue.finish(stale, DONE, result_prefix=f"_jobs/{job_id}/a1/out.tar")
        assert queue.finish(thief, DONE, result_prefix=f"_jobs/{job_id}/a2/out.tar")
        final = queue.row(job_id)
        assert final is not None and final.result_prefix == f"_jobs/{job_id}/a2/out.tar"
        assert to_job(final).state == DONE
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
            child.wait(10)
        engine.dispose()


def test_a_job_whose_analyzer_is_lost_three_times_fails_and_a_release_does_not_count(
    cluster_db: str, tmp_path: Path
) -> None:
    """The heartbeat's expiry is made by moving the row's heartbeat back (database clock)."""
    from safewatch.cluster.jobs import JobQueue

    engine = create_engine_for(cluster_db, tmp_path)
    upgrade(engine)
    queue = JobQueue(engine, expiry=2.0)
    job_id = _queue_job(queue, asset(CLIP))

    def expire() -> None:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE cluster_jobs SET heartbeat_at = heartbeat_at - 10 WHERE id = :id"),
                {"id": job_id},
            )

    try:
        first = queue.claim("a1")
        assert first is not None and queue.release(first)  # a drain: not counted
        claims = [queue.claim("a2")]
        for name in ("a3", "a4"):
            expire()
            claims.append(queue.claim(name))
        row = queue.row(job_id)
        assert row is not None and (row.state, row.lost, row.claimed_by) == ("running", 2, "a4")
        assert row.message == "restarted: analyzer a3 was lost"
        expire()
        assert queue.claim("a5") is None
        row = queue.row(job_id)
        assert row is not None and (row.state, row.lost) == ("failed", 3)
        assert row.message.startswith("analyzer lost 3 times while running it (last: a4)")
        assert [c.attempt for c in claims if c is not None] == [2, 3, 4]
    finally:
        engine.dispose()


def test_a_job_cancelled_while_running_and_given_back_is_cancelled_not_queued(
    cluster_db: str, tmp_path: Path
) -> None:
    """A running job's cancel asks its claimer; a claimer that was stopping gave it back as
    queued with the request set and no claimer, and the next claim marked it "cancelled (its
    analyzer None was lost)". The release honours the request: cancelled, with its reason."""
    from safewatch.cluster.jobs import JobQueue

    engine = create_engine_for(cluster_db, tmp_path)
    upgrade(engine)
    queue = JobQueue(engine, expiry=2.0)
    job_id = _queue_job(queue, asset(CLIP))
    try:
        claim = queue.claim("a1")
        assert claim is not None
        cancelled = queue.cancel(job_id)
        assert cancelled is not None and cancelled.cancel_requested
        assert queue.release(claim)  # a1 stops before its job saw the request
        row = queue.row(job_id)
        assert row is not None
        assert (row.state, row.message) == ("cancelled", "cancelled (analyzer a1 was stopping)")
        assert row.finished_at is not None and row.heartbeat_at is None
        assert queue.claim("a2") is None  # nothing left to run
        assert not queue.release(claim)  # no longer held: nothing written
        # a job given back without a cancel still goes back to the queue
        other = _queue_job(queue, asset(CLIP))
        again = queue.claim("a1")
        assert again is not None and again.job.id == other and queue.release(again)
        row = queue.row(other)
        assert row is not None and (row.state, row.claimed_by) == ("queued", None)
    finally:
        engine.dispose()


def test_the_periodic_pass_fails_interrupted_uploads_and_removes_orphaned_copies(
    cluster_db: str, tmp_path: Path
) -> None:
    """A receiving row untouched for five minutes (database clock) is failed and its blobs
    deleted (once, with two nodes at it); a fresh one stays, shown as receiving; local copies of
    jobs deleted elsewhere go, a done job's copy stays."""
    from safewatch.api.cluster_jobs import ClusterJobs
    from safewatch.api.jobs import AuditJob

    site_path = job_site(tmp_path, cluster_db)
    engine = create_engine_for(cluster_db, tmp_path)
    upgrade(engine)
    try:
        with api_node(site_path) as node_a, api_node(site_path) as node_b:
            jobs_a, jobs_b = node_a.jobs, node_b.jobs
            assert isinstance(jobs_a, ClusterJobs) and isinstance(jobs_b, ClusterJobs)
            table = jobs_a._table
            blobs = node_a.storage.evidence.backend
            ids = {name: f"{name:0<12}" for name in ("stale", "fresh", "done", "gone")}
            for job_id in ids.values():
                table.insert(AuditJob(job_id, "v.mp4", "cam1", "t", time.time()))
                blobs.put_bytes(f"_jobs/{job_id}/input.mp4", b"video")
                (jobs_a.folder / job_id / "out-1").mkdir(parents=True)
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE cluster_jobs SET heartbeat_at = heartbeat_at - 301 WHERE id = :i"),
                    {"i": ids["stale"]},
                )
            table.change(ids["done"], state="done")
            table.remove(ids["gone"])
            assert jobs_b.get(ids["fresh"]).state == "receiving"
            jobs_b.sweep()
            jobs_a.sweep()  # a second node's pass finds nothing more to do
            stale = jobs_a.get(ids["stale"])
            assert (stale.state, stale.message) == (
                "failed",
                "upload interrupted: its API node stopped storing the inputs",
            )
            assert jobs_a.get(ids["fresh"]).state == "receiving"
            left = {info.key.split("/")[1] for info in blobs.list("_jobs/")}
            assert left == {ids["fresh"], ids["done"], ids["gone"]}
            kept = {p.name for p in jobs_a.folder.iterdir()}
            assert kept == {ids["fresh"], ids["done"]}
            # The node still storing the stale job's inputs finds its row failed: no queueing.
            assert not table.queue(ids["stale"], {"video_key": "x"})
    finally:
        engine.dispose()


def test_a_jobs_start_time_reaches_the_analyzer_that_claims_it(pg_engine: Any) -> None:
    """A start given at submission (an upload without creation time) is kept in the job's spec
    when its inputs are queued, and the claimer's job carries it."""
    from safewatch.api.jobs import AuditJob
    from safewatch.cluster.jobs import JobQueue, to_job

    queue = JobQueue(pg_engine, expiry=3.0)
    job = AuditJob("0123456789ac", "clip.mp4", "cam1", "admin", time.time(), start=1487768836.0)
    queue.insert(job)
    assert queue.queue(job.id, {"video_path": "/footage/clip.mp4"})
    row = queue.row(job.id)
    assert row is not None
    assert row.spec == {"start": 1487768836.0, "video_path": "/footage/clip.mp4"}
    assert to_job(row).start == 1487768836.0
    claim = queue.claim("a1")
    assert claim is not None and claim.job.start == 1487768836.0


def _endless_job(*args: Any, started: Any, progress: Any) -> Any:
    """A job that runs until its runner stops it (its check raises in ``progress``)."""
    started(None)
    while True:
        progress(0)
        time.sleep(0.05)


class _Outage:
    """A :class:`JobQueue` whose heartbeat and claim fail while ``down`` (the database away),
    recording each call and whether it went through."""

    def __init__(self, queue: Any) -> None:
        self.queue, self.expiry, self.down = queue, queue.expiry, False
        self.calls: list[tuple[str, bool]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)

    def _call(self, name: str, *args: Any) -> Any:
        down = self.down
        self.calls.append((name, not down))
        if down:
            from safewatch.errors import StorageError

            raise StorageError("the database is away")
        return getattr(self.queue, name)(*args)

    def heartbeat(self, claims: Any) -> Any:
        return self._call("heartbeat", claims)

    def claim(self, analyzer_id: str) -> Any:
        return self._call("claim", analyzer_id)


def test_after_an_outage_past_the_expiry_an_analyzer_does_not_claim_its_own_job_again(
    pg_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away while a job runs; its row's heartbeat is made older than the
    expiry (database clock); once back, the runner heartbeats before it claims: the job keeps
    its attempt, no lost analyzer is counted, and the runner still runs and heartbeats it."""
    from safewatch.cluster.jobs import JobQueue
    from safewatch.runtime import job_runner

    monkeypatch.setattr(job_runner, "run_job", _endless_job)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    flaky = _Outage(JobQueue(pg_engine, expiry=3.0))
    job_id = _queue_job(flaky.queue, video)
    # two slots: one stays free, so the runner keeps claiming while its job runs
    runner = job_runner.JobRunner(flaky, "a1", 2, None, None, tmp_path / "work", poll=0.05)
    runner.start()
    try:
        wait_until(lambda: runner.running() == [job_id], 30, 0.02)
        flaky.down = True
        mark = len(flaky.calls)
        wait_until(lambda: ("heartbeat", False) in flaky.calls[mark:], 30, 0.02)
        with pg_engine.begin() as connection:
            connection.execute(
                text("UPDATE cluster_jobs SET heartbeat_at = heartbeat_at - 100 WHERE id = :id"),
                {"id": job_id},
            )
        mark = len(flaky.calls)
        flaky.down = False
        wait_until(lambda: ("claim", True) in flaky.calls[mark:], 30, 0.02)
        row = flaky.queue.row(job_id)
        assert row is not None
        assert (row.state, row.claimed_by, row.attempt, row.lost) == ("running", "a1", 1, 0)
        assert runner.running() == [job_id]
    finally:
        runner.stop(10)


def test_a_jobs_heartbeat_goes_on_while_the_shared_pool_is_exhausted(
    pg_url: str, pg_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection of the process's shared pool is taken (incident writes of many cameras,
    a slow query) for two expiries while a job runs: the runner heartbeats and claims on the
    engine of its own it is given (an analyzer's membership engine), so the job's heartbeat
    keeps moving and no other analyzer can claim the job. On the shared pool the heartbeat
    waited for a connection past the expiry and the job was restarted elsewhere."""
    from sqlalchemy import create_engine

    from safewatch.cluster.jobs import JobQueue
    from safewatch.runtime import job_runner

    monkeypatch.setattr(job_runner, "run_job", _endless_job)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    shared = create_engine(pg_url, pool_size=2, max_overflow=0, pool_timeout=120)
    queue = JobQueue(shared, expiry=3.0, claimer_engine=pg_engine)
    other = JobQueue(pg_engine, expiry=3.0)  # another analyzer
    job_id = _queue_job(queue, video)
    # two slots: one stays free, so the runner's loop keeps claiming too
    runner = job_runner.JobRunner(queue, "a1", 2, None, None, tmp_path / "work", poll=0.05)
    held: list[Any] = []

    def heartbeat_at() -> float:
        row = other.row(job_id)
        assert row is not None and row.heartbeat_at is not None
        return row.heartbeat_at

    runner.start()
    try:
        wait_until(lambda: runner.running() == [job_id], 30, 0.02)
        held = [shared.connect() for _ in range(2)]  # the shared pool is exhausted
        assert shared.pool.checkedout() == 2
        before = heartbeat_at()
        end = time.monotonic() + 2 * queue.expiry
        while time.monotonic() < end:
            assert other.claim("a2") is None, "the job's heartbeat expired"
            time.sleep(0.2)
        assert heartbeat_at() > before
        row = other.row(job_id)
        assert row is not None
        assert (row.state, row.claimed_by, row.attempt, row.lost) == ("running", "a1", 1, 0)
        assert runner.running() == [job_id]
    finally:
        for connection in held:
            connection.close()
        runner.stop(10)
        shared.dispose()


def test_a_claims_thread_ending_leaves_a_later_claim_of_the_same_job_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread of an earlier claim of a job this analyzer claimed again ends (its claim
    lost): the later claim stays among the running ones, so it is still heartbeated."""
    from safewatch.api.jobs import AuditJob
    from safewatch.cluster.jobs import Claim, JobLost
    from safewatch.runtime.job_runner import JobRunner

    job = AuditJob("0123456789ad", "clip.mp4", "cam1", "t", time.time())
    earlier, later = Claim(job, {}, 1, "a1"), Claim(job, {}, 2, "a1")
    runner = JobRunner(None, "a1", 1, None, None, tmp_path)

    def lost(claim: Claim, folder: Path) -> None:
        raise JobLost("claimed again")

    monkeypatch.setattr(runner, "_finish", lost)
    runner._running[job.id] = later
    runner._run(earlier)
    assert runner._running == {job.id: later}


class _Counting:
    """A job table that records the runner's calls and has no job to give."""

    expiry = 0.3  # a heartbeat (and a look for a job) every 0.1 s

    def __init__(self) -> None:
        self.calls: list[str] = []

    def heartbeat(self, claims: Any) -> set[str]:
        self.calls.append("heartbeat")
        return set()

    def claim(self, analyzer_id: str) -> None:
        self.calls.append("claim")


def test_a_runner_claims_no_job_while_its_analyzer_holds_off(tmp_path: Path) -> None:
    """While the membership holds off (its database link keeps dropping, ``paused``), the
    runner heartbeats its claims but claims no new job; it claims again once it ends."""
    from safewatch.runtime.job_runner import JobRunner

    queue = _Counting()
    held_off = True
    runner = JobRunner(
        queue, "a1", 1, None, None, tmp_path, poll=0.05, paused=lambda: held_off
    ).start()
    try:
        wait_until(lambda: queue.calls.count("heartbeat") >= 5, 30, 0.02)
        assert "claim" not in queue.calls  # each of those rounds would have claimed
        held_off = False
        wait_until(lambda: "claim" in queue.calls, 30, 0.02)
    finally:
        runner.stop(10)


def test_an_api_nodes_storage_ends_transactions_left_idle_as_an_analyzers_does(
    cluster_db: str, tmp_path: Path
) -> None:
    """An API process under ``serve --cluster`` writes incidents (chain lock) on storage of its
    own: its sessions get the analyzers' idle transaction limit, half the 2 s lease; a single
    host's API process keeps the server's default (none)."""
    site = load_site(job_site(tmp_path, cluster_db))
    engine = create_engine_for(cluster_db, tmp_path)
    upgrade(engine)
    engine.dispose()
    show = text(
        "SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'"
    )
    for cluster, expected in ((True, "1000"), (False, "0")):
        storage = open_storage(site, cluster=cluster)
        try:
            with storage.engine.connect() as connection:
                assert connection.execute(show).scalar() == expected, cluster
        finally:
            storage.close()


def test_job_claims_and_heartbeats_on_the_membership_pool_end_when_left_idle(
    cluster_db: str, tmp_path: Path
) -> None:
    """An analyzer's job queue claims and heartbeats on the membership's own pool, in plain
    sessions: they get the idle transaction limit (half the 2 s lease) as the shared engine's
    do, and a member's transactions there still set their own lock timeout."""
    from safewatch.cluster import ClusterMember
    from safewatch.runtime.cluster_owner import membership_engine

    site = load_site(job_site(tmp_path, cluster_db))
    engine = membership_engine(site)
    try:
        upgrade(engine)
        current = text(
            "SELECT current_setting('idle_in_transaction_session_timeout'), "
            "current_setting('lock_timeout')"
        )
        with Session(engine) as session, session.begin():  # as JobQueue.claim() opens one
            assert tuple(session.execute(current).one()) == ("1s", "0")
        member = ClusterMember(engine, "a1", [], _NoListener(), lease_seconds=2.0)
        with member._transaction(lock_timeout=0.2) as session:
            assert tuple(session.execute(current).one()) == ("1s", "200ms")
    finally:
        engine.dispose()


class _NoListener:
    def acquired(self, camera_id: str, epoch: int, takeover: Any) -> None:
        return None

    def released(self, camera_id: str, reason: str) -> None:
        return None
