"""Crash test: ``kill -9`` a process while it writes an incident's clip, then start a fresh one.

After the restart no incident may be lost, no partial file may remain, and no incident may point at
a clip that does not play: the interrupted clip is either completed (what was flushed before the
kill, remuxed) or removed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from evidence_frames import read_index
from safewatch.config.site import EvidenceConfig
from safewatch.incidents import EvidenceRecorder, EvidenceStore
from safewatch.storage import IncidentRepository, create_engine_for

CHILD = Path(__file__).with_name("evidence_crash_child.py")
FPS = 10.0


def run_and_kill(workdir: Path, ready_bytes: int) -> str:
    """Start the child, wait until its clip holds ``ready_bytes``, SIGKILL it; the incident id."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(workdir), str(ready_bytes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    incident_id = None
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        for line in child.stdout:
            if line.startswith("incident "):
                incident_id = line.split()[1]
            if line.strip() == "ready":
                break
            assert time.monotonic() < deadline, "the child never got its clip going"
        else:
            errors = child.stderr.read() if child.stderr else ""
            raise AssertionError(f"child exited early ({child.wait()}): {errors}")
        time.sleep(0.3)  # mid-write: frames keep arriving
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert incident_id is not None
    return incident_id


def frame_indices(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_index(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]


@pytest.mark.slow
@pytest.mark.parametrize("ready_bytes", [1, 30_000], ids=["just-started", "several-fragments"])
def test_kill_9_while_writing_a_clip_loses_no_incident(tmp_path: Path, ready_bytes: int) -> None:
    incident_id = run_and_kill(tmp_path, ready_bytes)
    spool = tmp_path / "evidence" / ".clips-in-progress"
    assert list(spool.glob("*.mp4.part")), "the kill should have interrupted a clip"

    # A fresh process (here: this one) opens the same database and folder.
    engine = create_engine_for("sqlite:///safewatch.db", tmp_path)
    try:
        repo = IncidentRepository(engine)
        store = EvidenceStore(tmp_path / "evidence")
        recorder = EvidenceRecorder(store, repo, EvidenceConfig())
        recorder.close(timeout=10)
        recovery = recorder.stats.recovery

        incident = repo.get(incident_id)  # not lost
        assert incident.ended_at is None and incident.snapshot is not None
        assert store.path_of(incident.snapshot).stat().st_size > 0
        assert not list(spool.iterdir()), "a partial file survived the restart"
        assert len(recovery.completed) + len(recovery.removed) == 1
        for stored in repo.list(limit=100):  # nothing points at an unplayable clip
            if stored.clip is not None:
                assert frame_indices(store.path_of(stored.clip))
        if ready_bytes > 1:
            # Several fragments were on disk: the clip must have been completed, starting at
            # the clip window (2 s before the episode's start at frame 20) without a gap.
            assert incident.clip is not None and recovery.completed == [incident.clip]
            kept = frame_indices(store.path_of(incident.clip))
            assert len(kept) >= 20 and kept == list(range(len(kept)))
    finally:
        engine.dispose()
