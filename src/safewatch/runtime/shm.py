"""Shared-memory frame slots: how a decode process hands pixels to the inference worker.

Frames never ride a queue (architecture principle 4): pickling a 640x352 BGR frame costs as much
as decoding it, and a 1080p one far more. Instead each decode worker owns a :class:`SharedRing`,
a ``multiprocessing.shared_memory`` block of ``slots`` fixed-size frame slots, writes each sampled
frame into the next slot and sends only a :class:`SlotRef` (ring name, slot, version) through its
pipe. The server process attaches to the ring and copies the frame out when it batches it.

Consistency is a per-slot seqlock: the writer makes the slot's version odd, writes the pixels, then
makes it even again (the new even value is what the :class:`SlotRef` carries). A reader copies the
slot and accepts the copy only if the version before and after equals the announced one; a slot
overwritten meanwhile (the writer lapped the ring because the reader fell ``slots`` frames behind)
is refused and counted as a dropped frame, never delivered torn. The announcement travels through
a pipe (a system call on both sides), which orders the pixel writes before the reader's copy. Only
the detection of a lap relies on stores becoming visible in program order, which x86 guarantees;
on weakly ordered CPUs a lap could in principle go unnoticed, and it needs the reader to fall
``slots`` frames behind during one copy (about 0.1 ms for 640x352).

A ring is sized for one frame shape; a camera that changes resolution gets a new ring. The worker
that creates a ring unlinks it when it exits cleanly; the rings of a worker that died are unlinked
by the server's :class:`~safewatch.runtime.rings.RingCache` once retired (:func:`unlink_ring`).
Workers are spawned by the supervisor and so share its ``multiprocessing`` resource tracker: a
ring registered twice (by its writer and by a reader that attached) is one entry there, removed
by whichever unlinks it, and anything left at exit is cleaned up by the tracker.

When the whole process group is killed (systemd's ``SIGKILL`` after ``TimeoutStopSec``, the OOM
killer taking the server) the tracker dies with it and every ring stays in ``/dev/shm`` until
reboot: 2.7 MB per 640x352 camera, ~25 MB at 1080p, each time. Rings are therefore named
``safewatch-<server pid>-<server start>-<random>`` (a decode worker's by the server that started
it; the start is the process's start time in clock ticks since boot, in hex, from
``/proc/<pid>/stat``) and a starting server removes those of servers no longer running
(:func:`sweep_orphan_rings`): the pid is not running, or it is but started at another time. The
start time is what makes the sweep work in a container: there ``safewatch serve`` is pid 1, and
a ``/dev/shm`` that outlives the container (a Kubernetes ``emptyDir``) would otherwise keep a
killed pid 1's rings for ever, the restarted server being pid 1 again. The rings of a process
still running with the same start are kept, whatever the process: telling a safewatch by its
command line would take a server embedded in another program (or a test run, several services
in one process) for a stranger and break its cameras. Where ``/proc`` is missing (macOS) a ring
is named ``safewatch-<server pid>-<random>`` (the older form) and kept while that pid runs, so a
dead server's pid already reused keeps its rings until a start after that process ended; such
names left by older versions are treated the same way. The pids are this host's: a ``/dev/shm``
shared between pid namespaces (containers with ``--ipc=host``) would see another namespace's
server as gone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from safewatch.domain.frame import Image

__all__ = ["RingSpec", "SharedRing", "SlotRef", "sweep_orphan_rings", "unlink_ring"]

log = logging.getLogger(__name__)

_HEADER_ALIGN = 64  # keep the first slot cache-line aligned

_NAME = re.compile(r"safewatch-([1-9][0-9]*)-(?:([0-9a-f]+)-)?[0-9a-f]+")
"""A ring's name: its server's pid, its start time in hex where known, then random hex.

With a start time (Linux) a name has at most 10 + 7 + 1 + 10 + 1 + 6 = 35 characters (pid_max
2**22, 348 years of uptime at 100 ticks/s); Linux allows 255. Without one (no ``/proc``: macOS)
it has at most 30, macOS's limit.
"""

SHM_DIR = Path("/dev/shm")
"""Where Linux keeps POSIX shared memory, by name."""


@dataclass(frozen=True, slots=True)
class RingSpec:
    """What a reader needs to attach to a ring.

    Attributes:
        name: The shared-memory block's name.
        shape: ``(height, width, 3)`` of every frame in it.
        slots: Number of frame slots.
    """

    name: str
    shape: tuple[int, int, int]
    slots: int

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame."""
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class SlotRef:
    """Where one published frame lies: the small message that replaces the pixels on the pipe.

    Attributes:
        ring: The ring's name.
        slot: Slot index.
        version: The slot's (even) version right after this frame was written.
    """

    ring: str
    slot: int
    version: int


def _header_bytes(slots: int) -> int:
    raw = slots * 8
    return (raw + _HEADER_ALIGN - 1) // _HEADER_ALIGN * _HEADER_ALIGN


class SharedRing:
    """A ring of frame slots in one shared-memory block, with a seqlock version per slot.

    Use :meth:`create` in the writer (the owner) and :meth:`attach` in readers. One writer only;
    any number of readers. Not thread-safe on either side: one thread writes, and each reader
    process reads from one thread.
    """

    def __init__(self, memory: shared_memory.SharedMemory, spec: RingSpec, owner: bool) -> None:
        self._memory = memory
        self.spec = spec
        self.owner = owner
        header = _header_bytes(spec.slots)
        buffer = memory.buf
        assert buffer is not None
        self._versions: NDArray[np.int64] | None = np.ndarray(
            (spec.slots,), dtype=np.int64, buffer=buffer, offset=0
        )
        self._frames: NDArray[np.uint8] | None = np.ndarray(
            (spec.slots, *spec.shape), dtype=np.uint8, buffer=buffer, offset=header
        )
        self._next = 0

    @classmethod
    def create(
        cls, shape: tuple[int, int, int], slots: int, *, server: int | None = None
    ) -> SharedRing:
        """Allocate a ring for frames of ``shape`` (pages are only backed once written).

        Args:
            shape: ``(height, width, 3)``.
            slots: Number of frame slots.
            server: Pid of the safewatch server the ring belongs to, in its name (default:
                this process); a decode worker names the server that started it.
        """
        if slots < 2:
            raise ValueError(f"a ring needs at least 2 slots, got {slots}")
        if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
            raise ValueError(f"frame shape must be (height, width, 3), got {shape}")
        size = _header_bytes(slots) + slots * math.prod(shape)
        owner = os.getpid() if server is None else server
        start = _start_time(owner)  # tells this server from a later one with its pid
        prefix = f"safewatch-{owner}-" if start is None else f"safewatch-{owner}-{start:x}-"
        while True:
            name = prefix + secrets.token_hex(4 if start is None else 3)
            try:
                memory = shared_memory.SharedMemory(name=name, create=True, size=size)
            except FileExistsError:
                continue  # one in 4 billion: draw again
            break
        ring = cls(memory, RingSpec(memory.name, shape, slots), owner=True)
        assert ring._versions is not None
        ring._versions[:] = 0
        return ring

    @classmethod
    def attach(cls, spec: RingSpec) -> SharedRing:
        """Map an existing ring read-only in spirit (the reader never writes to it).

        Raises:
            FileNotFoundError: The ring was unlinked (its worker is gone).
        """
        memory = shared_memory.SharedMemory(name=spec.name, create=False)
        return cls(memory, spec, owner=False)

    @property
    def name(self) -> str:
        """The shared-memory block's name."""
        return self.spec.name

    def write(self, image: Image) -> SlotRef:
        """Copy ``image`` into the next slot and return where it lies (writer only).

        Raises:
            ValueError: The image's shape is not the ring's.
        """
        versions, frames = self._views()
        if image.shape != self.spec.shape:
            raise ValueError(f"frame shape {image.shape} does not fit ring {self.spec.shape}")
        slot = self._next
        self._next = (slot + 1) % self.spec.slots
        version = int(versions[slot])
        if version % 2:  # a previous owner died mid-write: the slot content is garbage anyway
            version += 1
        versions[slot] = version + 1
        np.copyto(frames[slot], image)
        versions[slot] = version + 2
        return SlotRef(self.spec.name, slot, version + 2)

    def read(self, ref: SlotRef) -> Image | None:
        """A private copy of the frame ``ref`` announced, or ``None`` if it was overwritten."""
        versions, frames = self._views()
        if not 0 <= ref.slot < self.spec.slots or versions[ref.slot] != ref.version:
            return None
        copy: Image = np.array(frames[ref.slot], dtype=np.uint8, copy=True)
        if versions[ref.slot] != ref.version:
            return None
        return copy

    def close(self) -> None:
        """Unmap the block in this process; idempotent."""
        self._versions = None
        self._frames = None
        with contextlib.suppress(BufferError, OSError):
            self._memory.close()

    def unlink(self) -> None:
        """Remove the block's name (owner only); mappings stay valid until closed."""
        with contextlib.suppress(FileNotFoundError):
            self._memory.unlink()

    def _views(self) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        if self._versions is None or self._frames is None:
            raise ValueError(f"ring {self.spec.name} is closed")
        return self._versions, self._frames


def unlink_ring(name: str) -> bool:
    """Remove a ring left by a worker that died; ``False`` when it is already gone."""
    try:
        memory = shared_memory.SharedMemory(name=name, create=False)
    except FileNotFoundError:
        return False
    try:
        memory.unlink()  # also unregisters it from this process's resource tracker
    except FileNotFoundError:
        return False
    finally:
        memory.close()
    return True


def sweep_orphan_rings(directory: Path = SHM_DIR) -> list[str]:
    """Remove the rings of safewatch servers no longer running; the names removed.

    Run at a server's start, before its cameras: rings of a server still running (this one, or
    another on the host) are kept. Removing a block's entry in ``/dev/shm`` is what
    ``shm_unlink`` does on Linux; nothing happens where ``directory`` cannot be listed.
    """
    try:
        names = sorted(entry.name for entry in directory.iterdir())
    except OSError:
        return []
    removed = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None or _server_running(int(match.group(1)), match.group(2)):
            continue
        path = directory / name
        try:
            # Another user's ring (a root test run on a host whose service runs as safewatch)
            # cannot be removed from the sticky /dev/shm; its PermissionError aborted the
            # start, and systemd restarted the server into the same failure for ever.
            if path.stat().st_uid != os.getuid():
                continue
            path.unlink()
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError as error:
            log.warning("cannot remove the leftover shared-memory block %s: %s", path, error)
            continue
        removed.append(name)
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (it may be the server that named a ring)."""
    try:
        os.kill(pid, 0)  # no signal: only whether it exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def _server_running(pid: int, start: str | None) -> bool:
    """Whether the server that named a ring (``pid``, its start time in hex if named) runs.

    A pid running with another start time is a later process: after a container restart the
    new ``safewatch serve`` is pid 1 again, and must not keep the killed one's rings. A start
    time that cannot be read (the process just ended, ``/proc`` hides it) keeps the ring.
    """
    if not _running(pid):
        return False
    if start is None:  # no start time in the name (macOS, older versions): the pid decides
        return True
    now = _start_time(pid)
    return now is None or now == int(start, 16)


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; ``None`` without ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # After the command name, which may hold spaces and parentheses: field 3 (state) onwards;
    # starttime is field 22 (proc(5)).
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
