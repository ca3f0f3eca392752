"""Audit jobs under ``serve --cluster``: submitted to one API node, run by an analyzer process
with a free slot, followed (progress, result) and cancelled from another API node.

Real parts: one PostgreSQL (the job table), two ``safewatch serve --cluster --role analyzer``
processes (their cameras disabled: they only take jobs), two API nodes in this process, each a
dashboard with its own database connections wired as ``serve --cluster`` wires it (that a served
``--role api`` node is wired so is checked in test_cluster_bus_serve.py), sharing only the
database and the evidence folder declared shared. The claimer is killed with ``kill -9`` in the
middle of the job: the other analyzer claims it after the heartbeat expiry (lease 2 s) and
finishes it.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_serve_support import CLIP, MODEL, Analyzer, write_cluster_site
from sqlalchemy import text

from api_support import add_users, client_for, login, wait_until
from assets import asset
from db_servers import PostgresServer
from safewatch.api.cluster_jobs import install_cluster_jobs
from safewatch.api.dashboard import Dashboard, DashboardSettings
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage
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
    storage = open_site_storage(site)
    dashboard = Dashboard.create(
        lambda: site, site_path.parent / "rules", storage, settings=DashboardSettings(**settings)
    )
    install_cluster_jobs(dashboard, site.config.cluster.lease_seconds)
    try:
        yield dashboard
    finally:
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
                first.stop()
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
