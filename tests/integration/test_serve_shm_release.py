"""A decode worker killed with ``kill -9`` leaves no shared memory behind while the server runs.

Each decode process writes its frames into a ``multiprocessing.shared_memory`` ring in
``/dev/shm``; a worker that dies never unlinks it, and before this fix the block stayed until the
server exited (2.7 MB per death at 640x352, ~25 MB at 1080p; a camera that keeps crashing leaks
that much each time). The server must release it once the ring is retired, a few seconds after
the death, and the restarted worker must stream from a new ring.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml
from serve_support import readyz, wait_for, write_site

from assets import asset
from safewatch.config.loader import load_site
from safewatch.runtime.service import RuntimeService, ServeOptions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SHM = Path("/dev/shm")


def rings_of(pid: int) -> set[str]:
    """Names of the ``/dev/shm`` blocks a process has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {
        line.split("/dev/shm/", 1)[1].strip() for line in maps.splitlines() if "/dev/shm/" in line
    }


@pytest.mark.skipif(not SHM.is_dir(), reason="needs Linux /dev/shm")
def test_a_killed_decode_workers_shared_memory_is_released_while_serving(
    tmp_path: Path,
) -> None:
    path = write_site(tmp_path, {"yard": str(asset("video/construction_cctv_640x352_24s.mp4"))})
    site = yaml.safe_load(path.read_text())
    site["cameras"]["yard"]["loop"] = True
    site["runtime"]["decode"] = "process"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    service = RuntimeService(load_site(path), ServeOptions(rules=tmp_path / "rules"))
    service.start()
    try:
        base = service.http_url
        assert base is not None
        pid = wait_for(
            lambda: (c := readyz(base)["cameras"]["yard"])["ready"] and c["pid"],
            60,
            "the camera streaming",
        )
        rings = wait_for(lambda: rings_of(pid), 10, "the worker's ring mapped")
        assert all((SHM / name).exists() for name in rings)

        os.kill(pid, signal.SIGKILL)
        camera = wait_for(
            lambda: (c := readyz(base)["cameras"]["yard"])["ready"] and c["pid"] != pid and c,
            60,
            "the worker restarted and streaming",
        )
        assert camera["restarts"] == 1
        wait_for(
            lambda: not any((SHM / name).exists() for name in rings),
            30,
            f"{sorted(rings)} gone from /dev/shm",
        )
        assert rings_of(camera["pid"]).isdisjoint(rings), "the new worker has its own ring"
        assert readyz(base)["cameras"]["yard"]["ready"] is True
    finally:
        service.stop()
