"""Shared-memory frame rings: round trip, laps refused, closed rings, cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from safewatch.runtime.rings import RingCache
from safewatch.runtime.shm import SharedRing, SlotRef, sweep_orphan_rings, unlink_ring

PROC = Path("/proc/self/stat").exists()


def frame(value: int) -> np.ndarray:
    data = np.full((4, 6, 3), value, np.uint8)
    data[0, 0] = (value, value + 1, value + 2)
    return data


def test_a_reader_gets_an_exact_private_copy() -> None:
    writer = SharedRing.create((4, 6, 3), slots=3)
    reader = SharedRing.attach(writer.spec)
    try:
        ref = writer.write(frame(7))
        copy = reader.read(ref)
        assert copy is not None
        assert np.array_equal(copy, frame(7))
        writer.write(frame(9))  # next slot: the copy is private and the first slot intact
        assert np.array_equal(copy, frame(7))
        assert np.array_equal(reader.read(ref), frame(7))
    finally:
        reader.close()
        writer.unlink()
        writer.close()


def test_an_overwritten_slot_is_refused_not_torn() -> None:
    writer = SharedRing.create((4, 6, 3), slots=2)
    reader = SharedRing.attach(writer.spec)
    try:
        first = writer.write(frame(1))
        writer.write(frame(2))
        lapped = writer.write(frame(3))  # same slot as the first, newer version
        assert lapped.slot == first.slot and lapped.version > first.version
        assert reader.read(first) is None
        assert np.array_equal(reader.read(lapped), frame(3))
        assert reader.read(SlotRef(writer.name, 5, 2)) is None  # no such slot
    finally:
        reader.close()
        writer.unlink()
        writer.close()


def test_wrong_shapes_and_closed_rings_are_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 slots"):
        SharedRing.create((4, 6, 3), slots=1)
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        SharedRing.create((4, 6), slots=2)  # type: ignore[arg-type]
    ring = SharedRing.create((4, 6, 3), slots=2)
    with pytest.raises(ValueError, match="does not fit"):
        ring.write(np.zeros((5, 6, 3), np.uint8))
    ring.unlink()
    ring.close()
    with pytest.raises(ValueError, match="closed"):
        ring.write(frame(1))


def test_unlink_ring_removes_a_dead_writers_ring_once() -> None:
    ring = SharedRing.create((4, 6, 3), slots=2)
    name = ring.name
    ring.close()  # the writer "died" without unlinking
    assert unlink_ring(name) is True
    assert unlink_ring(name) is False
    with pytest.raises(FileNotFoundError):
        SharedRing.attach(ring.spec)


def test_ring_cache_attaches_on_first_read_and_closes_retired_rings_later() -> None:
    now = [100.0]
    cache = RingCache(linger=5.0, clock=lambda: now[0])
    ring = SharedRing.create((4, 6, 3), slots=2)
    try:
        ref = ring.write(frame(4))
        assert cache.read(ref) is None  # not announced yet
        cache.announce(ring.spec)
        assert np.array_equal(cache.read(ref), frame(4))
        cache.retire(ring.name)
        now[0] += 4.9
        assert cache.collect() == 0
        assert np.array_equal(cache.read(ref), frame(4))  # still readable while it lingers
        now[0] += 0.2
        assert cache.collect() == 1
        assert cache.read(ref) is None
        assert cache.names() == []
    finally:
        ring.unlink()
        ring.close()


def test_ring_cache_unlinks_a_retired_ring_its_dead_writer_left() -> None:
    now = [100.0]
    cache = RingCache(linger=5.0, clock=lambda: now[0])
    ring = SharedRing.create((4, 6, 3), slots=2)
    ring.close()  # the writer died: mapping gone, name still in /dev/shm
    cache.announce(ring.spec)
    cache.retire(ring.name)
    now[0] += 5.0
    assert cache.collect() == 1
    with pytest.raises(FileNotFoundError):
        SharedRing.attach(ring.spec)


def started(pid: int) -> int:
    """Process ``pid``'s start time in clock ticks since boot (proc(5), field 22)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def test_a_ring_is_named_after_its_server() -> None:
    ring = SharedRing.create((4, 6, 3), slots=2)
    # A decode worker's names the server that started it: here this process's parent.
    worker = SharedRing.create((4, 6, 3), slots=2, server=os.getppid())
    try:
        if not PROC:  # macOS: no start time, and 30 characters at most
            assert ring.name.startswith(f"safewatch-{os.getpid()}-")
            assert worker.name.startswith(f"safewatch-{os.getppid()}-")
            assert len(ring.name) <= 30
            return
        assert ring.name.startswith(f"safewatch-{os.getpid()}-{started(os.getpid()):x}-")
        assert worker.name.startswith(f"safewatch-{os.getppid()}-{started(os.getppid()):x}-")
        assert len(ring.name) <= 40
    finally:
        for each in (ring, worker):
            each.unlink()
            each.close()


def test_the_rings_of_servers_no_longer_running_are_swept_and_others_kept(
    tmp_path: Path,
) -> None:
    """A process group killed whole (systemd's SIGKILL after TimeoutStopSec) takes the resource
    tracker with it: its rings stayed in /dev/shm until reboot. Real processes stand for the
    servers; the folder stands for /dev/shm."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    # Another server on the host, whatever its command line (embedded, a test run).
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "gone": f"safewatch-{gone.pid}-0a1b2c3d",
            "other": f"safewatch-{other.pid}-0a1b2c3d",
            "self": f"safewatch-{os.getpid()}-0a1b2c3d",
            "foreign": "psm_0a1b2c3d",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"")
        removed = sweep_orphan_rings(tmp_path)
    finally:
        other.kill()
        other.wait()
    assert removed == [names["gone"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["other"], names["self"], names["foreign"]]
    )
    assert sweep_orphan_rings(tmp_path / "missing") == []  # no /dev/shm: nothing to do


def test_a_leftover_that_cannot_be_removed_is_passed_over_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's ring cannot be removed from the sticky /dev/shm: its PermissionError
    aborted the server's start (and systemd restarted it into the same failure)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    theirs, ours = (
        tmp_path / f"safewatch-{gone.pid}-0a0a0a0a",
        tmp_path / f"safewatch-{gone.pid}-1b1b",
    )
    theirs.write_bytes(b"")
    ours.write_bytes(b"")
    if os.getuid() == 0:
        os.chown(theirs, 65534, 65534)  # as root: a file of another user
        assert sweep_orphan_rings(tmp_path) == [ours.name]
        assert theirs.exists()
        ours.write_bytes(b"")

    def refused(path: Path, missing_ok: bool = False) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(Path, "unlink", refused)
    assert sweep_orphan_rings(tmp_path) == []  # logged, and the start goes on


@pytest.mark.skipif(not PROC, reason="process start times come from /proc")
def test_a_ring_of_an_earlier_process_with_a_running_pid_is_swept(tmp_path: Path) -> None:
    """In a container the server is pid 1 and /dev/shm (an emptyDir) outlives it: after a
    SIGKILL the restarted pid 1 kept the killed one's rings for ever. The start time in the name
    tells them apart; the rings of this very process (several services in one test run) stay."""
    mine = started(os.getpid())
    names = {
        "earlier": f"safewatch-{os.getpid()}-{mine - 1:x}-0a1b2c",
        "mine": f"safewatch-{os.getpid()}-{mine:x}-0a1b2c",
        "older form": f"safewatch-{os.getpid()}-0a1b2c3d",
        "parent": f"safewatch-{os.getppid()}-{started(os.getppid()):x}-0a1b2c",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"")
    assert sweep_orphan_rings(tmp_path) == [names["earlier"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["mine"], names["older form"], names["parent"]]
    )
    ring = SharedRing.create((4, 6, 3), slots=2)  # as this process names a real one
    try:
        (tmp_path / ring.name).write_bytes(b"")
        assert sweep_orphan_rings(tmp_path) == []
    finally:
        ring.unlink()
        ring.close()
