"""Helpers of the cluster lease tests: a listener that logs ownership, a TCP proxy that cuts one
member off the database, and a polling wait with a generous deadline."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from patience import poll
from safewatch.cluster import ClusterMember, Takeover

__all__ = ["CutProxy", "Event", "OwnershipLog", "wait_for"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    poll(condition, timeout, what)


@dataclass(frozen=True)
class Event:
    seq: int
    member: str
    kind: str  # "acquired" | "released" | "crashed"
    camera: str
    epoch: int | None = None
    reason: str | None = None
    takeover: Takeover | None = None


@dataclass
class OwnershipLog:
    """One log of every member's listener calls, in the order they happened."""

    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_released: Callable[[str, str, str], None] | None = None

    def listener(self, member: str) -> _Listener:
        return _Listener(self, member)

    def add(self, member: str, kind: str, camera: str, **extra: object) -> None:
        with self.lock:
            self.events.append(Event(len(self.events), member, kind, camera, **extra))  # type: ignore[arg-type]

    def crashed(self, member: str) -> None:
        """Note that ``member`` was stopped without releasing (it analyses nothing any more)."""
        self.add(member, "crashed", "*")

    def of(self, member: str, kind: str | None = None) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.member == member and kind in (None, e.kind)]

    def owned_by(self, member: str) -> set[str]:
        """The cameras ``member`` owns as its listener calls so far say (none after a crash)."""
        owned: set[str] = set()
        with self.lock:
            for event in self.events:
                if event.member != member:
                    continue
                if event.kind == "crashed":
                    owned.clear()
                elif event.kind == "acquired":
                    owned.add(event.camera)
                else:
                    owned.discard(event.camera)
        return owned

    def wait_heard(self, *members: ClusterMember, timeout: float = 60.0) -> None:
        """Wait until the log has every listener call behind what ``members`` own now.

        A member's ``owned()`` changes on its loop thread, and the listener is told on a third
        thread afterwards (never under the member's lock); on a busy machine that call comes
        seconds later, so a test that waited on ``owned()`` must wait here before it reads the
        log (CI run f1 of 2026-12-06 read 3 acquisitions where the fourth was still queued)."""
        poll(
            lambda: all(self.owned_by(m.analyzer_id) == set(m.owned()) for m in members),
            timeout,
            "the listener calls behind " + ", ".join(m.analyzer_id for m in members),
        )

    def check_one_owner_at_a_time(self) -> int:
        """Every camera alternates acquired/released with one owner in between and rising
        epochs; returns the number of acquisitions checked."""
        owner: dict[str, str] = {}
        epochs: dict[str, int] = {}
        count = 0
        with self.lock:
            events = list(self.events)
        for event in events:
            if event.kind == "crashed":
                owner = {c: m for c, m in owner.items() if m != event.member}
            elif event.kind == "acquired":
                assert event.camera not in owner, (
                    f"{event.member} acquired {event.camera} while {owner.get(event.camera)} "
                    f"owned it (event {event.seq})"
                )
                assert event.epoch is not None and event.epoch > epochs.get(event.camera, 0)
                owner[event.camera] = event.member
                epochs[event.camera] = event.epoch
                count += 1
            else:
                assert owner.get(event.camera) == event.member, f"stray release {event}"
                del owner[event.camera]
        return count


@dataclass
class _Listener:
    log: OwnershipLog
    member: str

    def acquired(self, camera_id: str, epoch: int, takeover: Takeover | None) -> None:
        self.log.add(self.member, "acquired", camera_id, epoch=epoch, takeover=takeover)

    def released(self, camera_id: str, reason: str) -> None:
        if self.log.on_released is not None:
            self.log.on_released(self.member, camera_id, reason)
        self.log.add(self.member, "released", camera_id, reason=reason)


class CutProxy:
    """A TCP proxy in front of PostgreSQL that can cut its clients off.

    ``cut("refuse")`` closes every connection and refuses new ones at once (a stopped server);
    ``cut("hang")`` stops forwarding and leaves connections open, so a query waits forever (a
    network partition); :meth:`restore` forwards again.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._mode = "open"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, mode: str) -> None:
        self._mode = mode
        if mode == "refuse":
            self._close_all()

    def restore(self) -> None:
        self._mode = "open"

    def close(self) -> None:
        self._closed = True
        self._mode = "refuse"
        self._close_all()
        self._server.close()

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._mode == "refuse":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while self._mode == "hang" and not self._closed:
                    time.sleep(0.05)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)
