"""Continuous recording under ``serve --cluster``: a camera is recorded by its owner, into the
shared recordings folder, and the recording follows ownership.

Three servers of one site in one process (a real RTSP camera, a real PostgreSQL): analyzers A and
B, and an API node that owns nothing. A records while it owns the camera; handing the camera to
B closes A's open segment first and B continues; a segment a dead owner left open is named by the
next owner; the API node lists every segment of both owners, serves one, and exports a range
across the handover. (Leases are not involved: ownership is handed over with the calls
:class:`~safewatch.runtime.cluster_owner.ClusterOwner` makes; the lease path is covered by
``test_cluster_serve.py`` and ``test_cluster_leases.py``.)
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest
import yaml
from rtsp_server import RtspCamera
from serve_support import auth, wait_for, write_site

from db_servers import PostgresServer
from safewatch.config.loader import load_site
from safewatch.recording.segments import list_segments, part_path
from safewatch.runtime.service import RuntimeService, ServeOptions
from safewatch.storage import create_engine_for
from safewatch.storage.migrate import upgrade

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def pg_url(pg_server: PostgresServer, tmp_path: Path) -> Iterator[str]:
    with pg_server.fresh_schema() as url:
        engine = create_engine_for(url, tmp_path)
        upgrade(engine)
        engine.dispose()
        yield url


def admin_headers(site: Path) -> dict[str, str]:
    from safewatch.api.auth import AuthStore
    from safewatch.incidents.site_storage import open_site_storage

    storage = open_site_storage(load_site(site))
    try:
        store = AuthStore(storage.engine)
        store.add_user("boss", "boss-password-123", "admin")
        return {"Authorization": f"Bearer {store.create_token('boss', 'recording test').token}"}
    finally:
        storage.close()


def test_the_owner_records_the_next_owner_continues_any_api_node_serves(
    rtsp_camera: RtspCamera, pg_url: str, tmp_path: Path
) -> None:
    storage = {
        "database": pg_url,
        "evidence_dir": "shared/evidence",
        "evidence_shared": True,
        "recordings_dir": "shared/recordings",
        "recordings_shared": True,
    }
    path = write_site(tmp_path, {"yard": rtsp_camera.url}, extra={"storage": storage})
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["fps"] = 2
    site["cameras"]["yard"]["recording"] = {"segment_seconds": 1}
    path.write_text(yaml.safe_dump(site))
    admin = admin_headers(path)
    root = tmp_path / "shared" / "recordings"
    rules = tmp_path / "rules"

    def server(**options: object) -> RuntimeService:
        base = {"rules": rules, "cluster": True, "watch_site": False, "http": False}
        return RuntimeService(load_site(path), ServeOptions(**(base | options)))  # type: ignore[arg-type]

    a, b = server(), server()
    api = server(http=True, api="thread", port=0)
    started: list[RuntimeService] = []
    try:
        for node in (a, b, api):
            node.start()
            started.append(node)
        assert list_segments(root, "yard") == [], "nobody owns the camera: nothing recorded"

        a.own_camera("yard")
        wait_for(lambda: list_segments(root, "yard"), 90, "A's segments")
        t_disown = time.time()
        a.disown_camera("yard")  # a handover: A's open segment is closed before it returns
        t_disowned = time.time()
        assert not list(root.glob("yard/*/*.part.mp4")), "A left its segment open"
        by_a = list_segments(root, "yard")
        handed_over = time.time()
        b.own_camera("yard")
        t_owned = time.time()
        wait_for(lambda: len(list_segments(root, "yard")) > len(by_a), 90, "B's segments")

        # B dies without closing its segment: simulated by a segment-sized .part nobody wrote to
        # for longer than the orphan wait (3 leases, at least 30 s); A, the next owner, names it.
        b.disown_camera("yard", write=False)
        by_b = [s for s in list_segments(root, "yard") if s not in by_a]
        assert by_b[0].start >= by_a[-1].end - 0.01 and by_b[0].start >= handed_over - 1.0
        # (segment ends are the stream's own time: the test server's stream lags the wall clock
        # on a loaded machine, so the segments' gap is not the handover's)
        print(
            f"handover: A's disown_camera took {t_disowned - t_disown:.2f} s, B's own_camera "
            f"{t_owned - handed_over:.2f} s; B's first packet "
            f"{by_b[0].start - handed_over:.2f} s after the handover"
        )
        orphan = part_path(root, "yard", time.time() - 100)
        orphan.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(by_b[0].path, orphan)
        os.utime(orphan, (time.time() - 60, time.time() - 60))
        a.own_camera("yard")
        wait_for(lambda: not orphan.exists(), 30, "the dead owner's segment named")
        named = [s for s in list_segments(root, "yard") if abs(s.start - (time.time() - 100)) < 5]
        assert len(named) == 1 and named[0].end > named[0].start

        # The API node (owns nothing, records nothing) serves both owners' recording.
        base = api.http_url
        assert base is not None
        since, until = by_a[0].start, by_b[-1].end
        listed = httpx.get(
            f"{base}/api/v1/recordings/yard",
            params={"since": since, "until": until},
            headers=auth(),
            timeout=10,
        )
        assert listed.status_code == 200, listed.text
        starts = [round(s["start"], 3) for s in listed.json()["segments"]]
        assert starts == [round(s.start, 3) for s in (*by_a, *by_b)]
        first = listed.json()["segments"][0]
        served = httpx.get(f"{base}{first['url']}", headers=admin, timeout=10)
        assert served.status_code == 200 and served.content == by_a[0].path.read_bytes()
        exported = httpx.get(
            f"{base}/api/v1/recordings/yard/export",
            params={"since": by_a[-1].start, "until": by_b[0].end},
            headers=admin,
            timeout=60,
        )
        assert exported.status_code == 200, exported.text
        clip = tmp_path / "export.mp4"
        clip.write_bytes(exported.content)
        with av.open(str(clip)) as container:
            assert sum(1 for _ in container.decode(video=0)) > 0
    finally:
        for node in reversed(started):
            node.stop()
    assert not list(root.glob("yard/*/*.part.mp4")), "the stops closed every segment"
