"""The analyzer's side of the cluster: heartbeat, renew, claim, rebalance, and drain.

This is the interface ``safewatch serve --cluster`` codes against. A :class:`ClusterMember`
runs three background threads. The *renew* thread heartbeats the analyzer's row and renews the
leases it holds every ``renew_every`` seconds (a third of the lease by default), and does nothing
else, so no claim, camera stop or listener call can delay a renewal. The *loop* thread, more
often, reads the cluster, claims the cameras placement gives it (free or expired leases, ``FOR
UPDATE SKIP LOCKED``) and gives back at most one camera another analyzer should own (the owner
releases, the target claims: a graceful move, one camera at a time; a move its target has not
completed within :data:`STUCK_MOVE_LEASES` leases no longer holds up the others, and is reported
as a camera nobody owns; its target is handed no other camera until it claims that one). The
:class:`OwnershipListener`
is told when to start and stop each camera, on a thread of its own (one call at a time, in the
order decided), and never under the member's lock.

A camera whose stop has not returned yet is not claimed again, even when the database still
names this analyzer: its old run may still hold frames, and a new claim would give them a valid
epoch. A graceful stop that outlasts ``release_timeout`` is treated as lost (the fence refuses
its writes from then on) and its lease is released.

An analyzer that cannot renew stops its cameras before its lease can expire: each held camera has
a local deadline, ``lease_seconds - margin`` after the local start of its last successful renewal
(monotonic clock), and a watchdog thread drops the cameras past it (``released(..., "lost")``)
even while the database call hangs. :meth:`ClusterMember.epoch_of` also refuses past the
deadline, so the fence holds whichever thread notices first. After a freeze (SIGSTOP/SIGCONT) the
deadline has passed: the cameras are dropped without a write, and the member rejoins.

Every heartbeat carries a random token of the process (``instance``). Two processes started with
the same analyzer id used to take each other's leases as their own previous life's, about twice
a second, restarting every camera each time; now the heartbeat is not written while another
process's row under that id is fresh, :meth:`ClusterMember.start` waits up to a lease for it to go
stale (a restarted process whose previous life just died) and otherwise refuses, and a member
whose heartbeat is refused later claims nothing and lets its cameras go. Every heartbeat also
carries a digest of the cameras the analyzer was given: placement assumes every analyzer plans
over the same cameras, and one whose site file differs could be handed a camera it does not
know, which nobody would then analyse; a member that sees another digest says so in
:meth:`ClusterMember.health` (``/readyz``).

An analyzer whose database link keeps dropping holds off (:mod:`safewatch.cluster.hold_off`):
after repeated losses it heartbeats as ``held_off``, so the others' placement leaves it out and
keeps its cameras, and it claims nothing until the hold-off ends. Before, it was live again at
its first renewal, placement gave its cameras back, and every drop closed their open incidents
as ``analyzer_lost`` once more. Unless it is the only analyzer that may run some camera: then
it claims as before (a flapping owner is better than none).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from safewatch.cluster import leases
from safewatch.cluster.fencing import EpochFence
from safewatch.cluster.hold_off import HoldOff, needed_despite_hold_off
from safewatch.cluster.metrics import (
    CAMERAS_OWNED,
    CAMERAS_UNOWNED,
    CAMERAS_UNPLACED,
    FENCED_WRITES,
    HELD_OFF,
    RELEASES,
    ROUND_FAILURES,
    TAKEOVERS,
    start_at_zero,
)
from safewatch.cluster.placement import Analyzer, plan
from safewatch.cluster.takeover import (
    Takeover,
    close_left_open,
    handed_over,
    record_handover,
    take_over,
)
from safewatch.errors import StorageError
from safewatch.storage import hash_chain
from safewatch.storage.incident_repository import IncidentRepository
from safewatch.storage.migrate import ensure_schema

__all__ = ["ClusterMember", "OwnershipListener", "Takeover"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
"""Longest wait between two looks at the cluster (claims and handovers), so a released camera
is picked up within about this long (a drain's gap)."""

RELEASE_TIMEOUT = 30.0
"""Seconds a graceful camera stop (rebalance, removed, drain) may take before the camera is
treated as lost: its writes are fenced from then on and its lease is released, so one stuck stop
never holds a camera (or a drain) for ever."""

STUCK_MOVE_LEASES = 3.0
"""Leases after which a camera placed on a live analyzer but owned by nobody counts as stuck.

A graceful move (and a takeover) is claimed by its target within a round or two. The owner waits
for every move under way before it gives back the next camera, so one camera its target never
claims (its claim keeps failing, or its site file lacks the camera) held up every other move of
the cluster for as long as it lasted. Past this bound the move no longer counts as under way: the
other moves go on (placement is unchanged, so nothing moves twice), and the camera is reported
(:data:`~safewatch.cluster.metrics.CAMERAS_UNOWNED`, :meth:`ClusterMember.health`)."""

BACKOFF_SECONDS = 2.0
"""Longest wait after a failed round before the next (doubling from the poll period)."""

_LIMITS = text(
    "SELECT set_config('idle_in_transaction_session_timeout', :idle, true), "
    "set_config('lock_timeout', :lock, true)"
)
"""Both limits for the current transaction only (``SET LOCAL``), in one round trip."""

_LOCK_NOT_AVAILABLE = "55P03"

_CLOCK_SLACK = 5.0
"""Seconds between hosts' clocks tolerated when matching a handover's closes (NTP keeps them far
closer; the grants of the live video assume 5 s too)."""


def idle_transaction_limit(lease_seconds: float) -> float:
    """Seconds after which PostgreSQL ends a cluster process's transaction left idle: half a
    lease. The one setting for a member's own transactions and for the incident writes of
    ``serve --cluster`` (:mod:`safewatch.runtime.cluster_owner`): a process frozen inside a
    transaction that holds the chain lock or lease rows stalls the others at most this long."""
    return lease_seconds / 2


def limit_idle_transactions(engine: Engine, lease_seconds: float) -> None:
    """Have PostgreSQL end this process's transactions on ``engine`` that sit idle for
    :func:`idle_transaction_limit` (the member's own limit). For every engine of a
    ``serve --cluster`` process: an analyzer's and an API node's (an API process opens its
    own storage, and its incident writes, edits and acknowledgements, take the chain lock too).

    Incident writes hold the tamper-evidence chain's lock, which every node's writes and
    takeovers need. A process frozen inside such a transaction (SIGSTOP, a VM pause, swapping)
    would hold it, and stall the whole cluster, until it woke up; with this limit PostgreSQL
    ends the frozen session after half a lease and the others go on. A healthy writer never
    idles that long between two statements of one transaction. Connections pooled before the
    limit was set are replaced.
    """
    milliseconds = max(100, int(idle_transaction_limit(lease_seconds) * 1000))

    def limit(connection: Any, _record: object) -> None:
        cursor = connection.cursor()
        try:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {milliseconds}")
        finally:
            cursor.close()
        if not connection.autocommit:
            connection.commit()

    event.listen(engine, "connect", limit)
    engine.dispose()  # checked-in connections close now, checked-out ones when returned


class OwnershipListener(Protocol):
    """Starts and stops cameras as ownership moves (called from the member's threads, one call
    at a time)."""

    def acquired(self, camera_id: str, epoch: int, takeover: Takeover | None) -> None:
        """Start analysing ``camera_id``; ``takeover`` is set when an expired lease was taken."""
        ...

    def released(self, camera_id: str, reason: str) -> None:
        """Stop analysing ``camera_id``: ``rebalance``, ``drain``, ``lost`` or ``removed``.

        For every reason but ``lost`` the lease is still held during the call, so the camera's
        stop path may close its incidents; for ``lost`` it is not (any write would be fenced).
        """
        ...


@dataclass
class _Held:
    epoch: int
    deadline: float  # monotonic: stop using the camera after this


@dataclass(frozen=True)
class MemberHealth:
    """Whether the member's threads run and reach the database, and why not."""

    ok: bool
    message: str


class ClusterMember:
    """One analyzer's membership in the cluster (see the module docstring).

    Args:
        engine: A PostgreSQL engine with the schema at head (SQLite is refused).
        analyzer_id: Unique, stable name of this analyzer (host name, pod name).
        camera_ids: Every camera of the site (all analyzers are given the same list).
        listener: Told when to start and stop each camera.
        capacity: Relative weight in placement (cameras per unit of capacity are balanced).
        labels: This analyzer's labels (e.g. ``{"gpu": "true"}``).
        camera_labels: Labels each camera requires of its analyzer.
        lease_seconds: How long a lease lasts without renewal (database clock).
        renew_every: Heartbeat and renewal period; ``lease_seconds / 3`` by default.
        incidents: The repository whose incidents a takeover closes (its change hooks queue the
            "closed" alerts) and on which this member installs its :attr:`fence`; a bare one on
            ``engine`` when ``None``.
        release_timeout: Seconds a graceful stop may take (:data:`RELEASE_TIMEOUT`).
        video_url: Advertised with every heartbeat: where API nodes reach this analyzer's live
            video (:mod:`safewatch.api.cluster_video`); ``None``: it serves none.

    Raises:
        StorageError: The engine is not PostgreSQL, or its schema is not current (the message
            says to run ``safewatch db upgrade``).
        ValueError: A bad capacity, lease or period, or an empty analyzer id.
    """

    fence: EpochFence

    def __init__(
        self,
        engine: Engine,
        analyzer_id: str,
        camera_ids: Sequence[str],
        listener: OwnershipListener,
        *,
        capacity: int = 1,
        labels: Mapping[str, str] | None = None,
        camera_labels: Mapping[str, Mapping[str, str]] | None = None,
        lease_seconds: float = 10.0,
        renew_every: float | None = None,
        incidents: IncidentRepository | None = None,
        release_timeout: float = RELEASE_TIMEOUT,
        video_url: str | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise StorageError(
                f"cluster mode needs PostgreSQL (leases rely on its row locks and clock), not "
                f"{engine.dialect.name}: set storage.database_url to a postgresql+psycopg:// URL"
            )
        if not analyzer_id or len(analyzer_id) > 128:
            raise ValueError(f"analyzer id must be 1 to 128 characters, got {analyzer_id!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        self.margin = lease_seconds / 4
        renew = lease_seconds / 3 if renew_every is None else renew_every
        if not 0 < renew < lease_seconds - self.margin:
            raise ValueError(
                f"renew_every must be positive and below {lease_seconds - self.margin:g} s "
                f"(the lease less its safety margin), got {renew}"
            )
        self.analyzer_id = analyzer_id
        self.capacity = capacity
        self.labels = dict(labels or {})
        self.lease_seconds = float(lease_seconds)
        self.renew_every = float(renew)
        self.release_timeout = float(release_timeout)
        self.video_url = video_url
        # A claim waits for the chain lock at most this long: a busy chain skips the camera to
        # the next round rather than holding the loop (the renewals have their own thread).
        self.claim_lock_timeout = self.margin / 4
        self._engine = engine
        self._listener = listener
        self._cameras = tuple(sorted(set(camera_ids)))
        self._camera_labels = {k: dict(v) for k, v in (camera_labels or {}).items()}
        ensure_schema(engine, auto_upgrade=False)  # the lease tables are there, or say how
        self._incidents = incidents or IncidentRepository(engine)
        self.fence = EpochFence(analyzer_id, self.epoch_of)
        self._incidents.fence = self.fence
        self._held: dict[str, _Held] = {}
        self._lock = threading.RLock()  # held map and settling changes; never across I/O
        # Cameras whose stop the listener has not returned from yet: never claimed meanwhile.
        self._settling: dict[str, Future[None]] = {}
        self._calls: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self._draining = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_renew = 0.0
        self._added: tuple[str, ...] = ()
        self._failing: dict[str, str] = {}  # thread name -> last error, while failing
        self._unplaced: frozenset[str] = frozenset()  # cameras no live analyzer may run
        # cameras placed on a live analyzer and owned by nobody -> since when (monotonic)
        self._unowned_since: dict[str, float] = {}
        self._stuck: dict[str, str] = {}  # camera -> the analyzer that has not claimed it
        self._claims_failing: set[str] = set()  # cameras whose last claim here failed (warned)
        self._instance = uuid.uuid4().hex  # this process, in the heartbeat row
        self._id_taken = False  # the last heartbeat was refused: the id is another process's
        self._disagreeing: frozenset[str] = frozenset()  # live analyzers with another site
        self._hold_off = HoldOff(self.lease_seconds)  # counts losses (under the lock)
        # A hold-off would be waived: the only analyzer that may run some camera (every round)
        self._waived = False
        self._was_held = False  # the last round held off (to log its end once)

    # -- public -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background threads (renew; claim and rebalance; the watchdog)."""
        if self._threads:
            raise RuntimeError("cluster member already started")
        self._check_id_free()
        start_at_zero(self.analyzer_id)  # increase() sees the first takeover, release, failure
        self._stopping.clear()
        self._calls = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"cluster-listener-{self.analyzer_id}"
        )
        for name, target in (
            ("renew", self._renew_loop),
            ("loop", self._run),
            ("watchdog", self._watch),
        ):
            thread = threading.Thread(
                target=target, name=f"cluster-{name}-{self.analyzer_id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop the threads without releasing anything (as a crash would); for tests."""
        self._stopping.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                # A loop stuck in a hung database call is left behind (a daemon thread): its
                # cameras are already dropped by their deadline, and it writes nothing later
                # without a fresh claim, which a stopped member never makes.
                thread.join(timeout=self.lease_seconds + 5.0)
        self._threads = []
        if self._calls is not None:
            self._calls.shutdown(wait=False)  # a stuck listener call is left to finish alone

    def health(self) -> MemberHealth:
        """For ``/readyz``: every thread alive and the last rounds reaching the database."""
        if not self._threads:
            return MemberHealth(False, "not started")
        dead = [t.name for t in self._threads if not t.is_alive()]
        if dead and not self._stopping.is_set():
            return MemberHealth(False, f"thread(s) {', '.join(dead)} not running")
        problems = [f"{name} failing: {error}" for name, error in dict(self._failing).items()]
        cause = self._hold_off.cause
        if self.held_off() and cause is not None:
            problems.append(
                f"holding off placement for {self._hold_off.remaining():.0f} s after "
                f"{cause.losses} lease losses in {cause.within:.0f} s: its database link keeps "
                "dropping; the other analyzers run its cameras meanwhile"
            )
        if self._disagreeing:
            problems.append(
                f"analyzer(s) {', '.join(sorted(self._disagreeing))} were given other cameras "
                "(another site file): a camera may be analysed by nobody; give every analyzer "
                "the same site file"
            )
        if self._unplaced:
            problems.append(
                f"camera(s) {', '.join(sorted(self._unplaced))} analysed by no analyzer: no "
                f"live analyzer has the labels they require"
            )
        if stuck := dict(self._stuck):
            problems.append(
                "camera(s) "
                + ", ".join(f"{c} (placed on {a})" for c, a in sorted(stuck.items()))
                + f" owned by nobody for over {STUCK_MOVE_LEASES * self.lease_seconds:g} s: "
                "their analyzer does not claim them (see its log)"
            )
        if problems:
            return MemberHealth(False, "; ".join(problems))
        return MemberHealth(True, f"{len(self.owned())} camera(s) owned")

    def held_off(self) -> bool:
        """Whether this analyzer holds off claiming cameras now, after losing its leases again
        and again (see :mod:`safewatch.cluster.hold_off`); the job runner claims no job then."""
        return self._hold_off.remaining() > 0 and not self._waived

    def disagreeing(self) -> frozenset[str]:
        """Live analyzers that were given other cameras than this one, as of the last round."""
        return self._disagreeing

    def stuck(self) -> frozenset[str]:
        """Cameras placed on a live analyzer that has not claimed them for
        :data:`STUCK_MOVE_LEASES` leases, as of the last round (analysed by nobody)."""
        return frozenset(self._stuck)

    def unplaced(self) -> frozenset[str]:
        """Cameras no live analyzer is eligible for, as of the last round (analysed by nobody)."""
        return self._unplaced

    def drain(self, timeout: float) -> None:
        """Hand every camera over and leave the cluster (the SIGTERM path).

        The analyzer is marked ``draining`` first, so the others' placement leaves it out and
        they claim each camera as soon as it is released; then, one camera after another, it is
        stopped (``listener.released(..., "drain")``, while the lease is still held, so its
        incidents close normally) and its lease released at once, so each camera's gap is its
        own stop, not the sum of all of them. The renew thread keeps renewing meanwhile (and
        nothing is claimed), so a slow camera stop does not run past the lease. A stop that
        outlasts ``release_timeout`` or the drain's ``timeout`` is treated as lost. Finally the
        threads stop and the analyzer is marked ``gone``.
        """
        end = time.monotonic() + timeout
        self._draining.set()
        try:
            with self._transaction() as session:
                leases.set_state(session, self.analyzer_id, leases.DRAINING)
        except StorageError as exc:
            log.warning("cluster: cannot mark %s draining: %s", self.analyzer_id, exc)
        with self._lock:  # a claim under way finishes first; later ones see the flag
            pass
        for camera in sorted(self._held):
            left = end - time.monotonic()
            if left <= 0:
                self._lose(camera)
            else:
                self._give_back(camera, "drain", timeout=min(left, self.release_timeout))
        self.stop()
        try:
            with self._transaction() as session:
                leases.set_state(session, self.analyzer_id, leases.GONE)
        except StorageError as exc:
            log.warning("cluster: cannot mark %s gone: %s", self.analyzer_id, exc)

    def set_cameras(
        self,
        camera_ids: Sequence[str],
        camera_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Replace the site's cameras and their labels (a site reload).

        Applied by the background thread's next round: a removed camera is released
        (``removed``), a new one is placed and claimed like any other.
        """
        with self._lock:
            self._cameras = tuple(sorted(set(camera_ids)))
            self._camera_labels = {k: dict(v) for k, v in (camera_labels or {}).items()}

    def epoch_of(self, camera_id: str) -> int | None:
        """The epoch this analyzer holds for ``camera_id``, ``None`` when it is not the owner
        (or its local deadline has passed: it may no longer act as one)."""
        held = self._held.get(camera_id)
        if held is None or time.monotonic() >= held.deadline:
            return None
        return held.epoch

    def owned(self) -> frozenset[str]:
        """The cameras this analyzer owns now."""
        now = time.monotonic()
        return frozenset(c for c, held in list(self._held.items()) if now < held.deadline)

    # -- the rounds ---------------------------------------------------------------------------

    def _site_digest(self) -> str:
        """A hash of the cameras and the labels they require, as every analyzer should have."""
        with self._lock:
            site = {"cameras": list(self._cameras), "labels": self._camera_labels}
        return hashlib.sha256(json.dumps(site, sort_keys=True).encode()).hexdigest()

    def _heartbeat(self, session: Session) -> bool:
        # Held off: ``held_off``, which the others' placement leaves out as it does ``draining``
        # (told apart for the waiver's tie-break, see hold_off.needed_despite_hold_off).
        if self._draining.is_set():
            state = leases.DRAINING
        else:
            state = leases.HELD_OFF if self.held_off() else leases.ACTIVE
        return leases.heartbeat(
            session,
            self.analyzer_id,
            self.capacity,
            self.labels,
            state,
            self.video_url,
            instance=self._instance,
            site_digest=self._site_digest(),
            within=self.lease_seconds,
        )

    def _check_id_free(self) -> None:
        """Wait up to a lease (and a renewal) for this analyzer id to be free of another live
        process; refuse to start if it stays taken.

        A process restarted under a stable id (a pod name) finds its previous life's row fresh
        for up to a lease: it waits that out. One whose heartbeat keeps moving is alive.
        An unreachable database is left to the renew thread (it retries and shows it).

        Raises:
            StorageError: Another live process keeps heartbeating under this analyzer id.
        """
        end = time.monotonic() + self.lease_seconds + self.renew_every
        while True:
            try:
                with self._transaction() as session:
                    if self._heartbeat(session):
                        return
            except StorageError as exc:
                log.warning("cluster: cannot check analyzer id %s now: %s", self.analyzer_id, exc)
                return
            if time.monotonic() >= end:
                raise StorageError(
                    f"cluster: analyzer id {self.analyzer_id!r} is in use by another live "
                    f"process (its heartbeat kept moving for {self.lease_seconds:g} s): give "
                    "every analyzer its own id (serve --analyzer-id; the default is host-pid)"
                )
            log.warning(
                "cluster: analyzer id %s has a fresh heartbeat from another process; waiting "
                "for it to go stale",
                self.analyzer_id,
            )
            time.sleep(self.renew_every)

    @contextmanager
    def _transaction(self, lock_timeout: float | None = None) -> Iterator[Session]:
        """A short transaction whose locks cannot outlive a lease: if this process freezes or
        the network drops mid-transaction, the server aborts it (and frees the lease rows) after
        :func:`idle_transaction_limit`, and no statement waits longer than ``lock_timeout``
        (that limit by default) for a lock."""
        idle = idle_transaction_limit(self.lease_seconds)
        limits = {
            "idle": f"{max(1, int(idle * 1000))}ms",
            "lock": f"{max(1, int((idle if lock_timeout is None else lock_timeout) * 1000))}ms",
        }
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                session.execute(_LIMITS, limits)
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"cluster: {getattr(exc, 'orig', None) or exc}") from exc

    def _repeat(
        self,
        name: str,
        work: Callable[[], None],
        period: Callable[[], float],
        retry: Callable[[], float] | None = None,
    ) -> None:
        """Run ``work`` until stopped. Any exception ends one round, never the thread: it is
        logged with its traceback when the failing starts, counted, shown by :meth:`health`,
        and the next try waits longer (up to :data:`BACKOFF_SECONDS`), or at most ``retry()``
        seconds where that is sooner."""
        delay = period()
        while not self._stopping.is_set():
            try:
                work()
            except Exception as exc:
                ROUND_FAILURES.labels(analyzer=self.analyzer_id).inc()
                if name not in self._failing:
                    log.warning(
                        "cluster: %s %s round failed: %s",
                        self.analyzer_id,
                        name,
                        exc,
                        exc_info=not isinstance(exc, StorageError),
                    )
                self._failing[name] = str(exc) or type(exc).__name__
                delay = min(max(delay * 2, period()), max(BACKOFF_SECONDS, period()))
                if retry is not None:
                    delay = min(delay, retry())
            else:
                if self._failing.pop(name, None) is not None:
                    log.warning("cluster: %s %s rounds work again", self.analyzer_id, name)
                delay = period()
            self._stopping.wait(delay)

    def _run(self) -> None:
        self._repeat("claim", self._round, lambda: min(self.renew_every, POLL_SECONDS))

    def _renew_loop(self) -> None:
        def wait() -> float:
            return max(0.0, self._next_renew - time.monotonic())

        def renew() -> None:
            self._next_renew = time.monotonic() + self.renew_every
            self._renew()

        self._repeat(
            "renew",
            renew,
            lambda: min(self.renew_every, max(0.05, wait())),
            self._retry_renewal,
        )

    def _retry_renewal(self) -> float:
        """How soon to try a failed renewal again: a quarter of the time left before the
        nearest local deadline, so a database back within the margin keeps every camera.

        The ordinary backoff would wait a whole period or more: with a 3 s lease the second try
        came 2 s after a failure, after the deadline, and a 1.1 s database blip stopped every
        camera; with the default 10 s lease two failed tries did. Without held leases there is
        nothing to lose, and when another process holds this analyzer id retrying sooner cannot
        help: the ordinary backoff applies. Never more often than every eighth of the margin,
        so a failing database is not hammered by every analyzer near its deadline.
        """
        with self._lock:
            deadlines = [held.deadline for held in self._held.values()]
        if not deadlines or self._id_taken:
            return float("inf")
        return max(self.margin / 8, (min(deadlines) - time.monotonic()) / 4)

    def _round(self) -> None:
        if self._draining.is_set():
            return  # the renew thread keeps the leases alive while drain() hands them over
        with self._lock:
            cameras, labels = self._cameras, self._camera_labels
        for camera in sorted(set(self._held) - set(cameras)):
            self._give_back(camera, "removed")
        if cameras != self._added:
            with self._transaction() as session:
                leases.add_cameras(session, cameras)
            self._added = cameras
        with self._transaction() as session:
            live = leases.live_analyzers(session, self.lease_seconds)
            held_off = leases.live_analyzers(session, self.lease_seconds, leases.HELD_OFF)
            current = leases.read_leases(session, cameras)
            digests = leases.site_digests(session, self.lease_seconds)
        self._note_disagreement(digests)
        if self._id_taken:
            return  # the id is not ours: claim nothing
        owners = {camera: view.owner for camera, view in current.items()}
        holding = self._note_hold_off(cameras, live, held_off, owners, labels)
        if not holding and self.analyzer_id not in {a.analyzer_id for a in live}:
            return  # not (yet, or no longer) seen as live: claim nothing
        target = plan(cameras, live, owners, labels)
        self._note_unplaced(frozenset(c for c in cameras if target[c] is None))
        moving = self._note_unowned(cameras, target, owners, live)
        failed: Exception | None = None
        for camera in cameras:
            view = current.get(camera)
            if (
                not holding  # (still placed here until its heartbeat says held_off)
                and target[camera] == self.analyzer_id
                and camera not in self._held
                and camera not in self._settling  # its last run has not stopped yet
                and view is not None
                and view.owner in (None, self.analyzer_id)
            ):
                if self._draining.is_set() or self._stopping.is_set():
                    return
                try:
                    self._claim(camera)
                except Exception as exc:
                    # One camera whose claim keeps failing must not leave the cameras after it
                    # unclaimed, nor stop this member's rebalance: the round fails (counted,
                    # shown by health()) once the others were looked at. Warned once until it
                    # works again (every round, it was a line per camera twice a second).
                    if camera not in self._claims_failing:
                        log.warning(
                            "cluster: %s cannot claim camera %s: %s",
                            self.analyzer_id,
                            camera,
                            exc,
                        )
                    self._claims_failing.add(camera)
                    failed = failed or exc
                else:
                    if camera in self._claims_failing:
                        self._claims_failing.discard(camera)
                        log.warning(
                            "cluster: %s's claims of camera %s work again", self.analyzer_id, camera
                        )
        # (a camera placed elsewhere meanwhile is warned again if its claim here fails later)
        self._claims_failing &= {c for c in cameras if target[c] == self.analyzer_id}
        self._rebalance(cameras, target, moving)
        if failed is not None:
            raise failed

    def _note_hold_off(
        self,
        cameras: Sequence[str],
        live: Sequence[Analyzer],
        held_off: Sequence[Analyzer],
        owners: Mapping[str, str | None],
        labels: Mapping[str, Mapping[str, str]],
    ) -> bool:
        """Whether this round claims nothing because of a hold-off (the round still hands over
        what is held, gracefully). Waived while some camera that placement without this
        analyzer leaves to nobody would be placed on it (it is the only one, or the only one
        with the labels; among analyzers held off together, the lowest id: see
        :func:`~safewatch.cluster.hold_off.needed_despite_hold_off`): a flapping owner is
        better than none. Logs the end, sets the gauge.

        The waiver is decided at every round, held off or not: a hold-off starts at a loss,
        with the database out of reach, and the last round's answer holds until the next
        round reaches it. Reset at the loss, a lone analyzer was held off for the whole
        outage (its gauge at 1, its /readyz naming other analyzers that did not exist, and its
        first heartbeat back ``held_off``)."""
        held = self._hold_off.remaining() > 0
        me = Analyzer(self.analyzer_id, self.capacity, self.labels)
        needed = needed_despite_hold_off(cameras, me, live, held_off, labels)
        if held and needed and not self._waived:
            log.warning(
                "cluster: %s claims cameras despite its hold-off: no other live analyzer "
                "may run camera(s) %s",
                self.analyzer_id,
                ", ".join(needed),
            )
        self._waived = bool(needed)
        if not held and self._was_held:
            log.warning("cluster: %s's hold-off is over: it claims cameras again", self.analyzer_id)
        self._was_held = held
        HELD_OFF.labels(analyzer=self.analyzer_id).set(int(self.held_off()))
        return self.held_off()

    def _note_unplaced(self, unplaced: frozenset[str]) -> None:
        """Warn once per camera that no live analyzer may run (a mistyped label, say): it
        would otherwise be silently never analysed. Also a gauge and :meth:`health`."""
        for camera in sorted(unplaced - self._unplaced):
            log.warning(
                "cluster: camera %s is analysed by no analyzer: no live analyzer has the labels "
                "it requires (%s)",
                camera,
                self._camera_labels.get(camera, {}),
            )
        for camera in sorted(self._unplaced - unplaced):
            log.warning("cluster: camera %s has an eligible analyzer again", camera)
        self._unplaced = unplaced
        CAMERAS_UNPLACED.labels(analyzer=self.analyzer_id).set(len(unplaced))

    def _note_unowned(
        self,
        cameras: Sequence[str],
        target: Mapping[str, str | None],
        owners: Mapping[str, str | None],
        live: Sequence[Analyzer],
    ) -> frozenset[str]:
        """The moves under way: cameras placed on a live analyzer and owned by nobody for less
        than :data:`STUCK_MOVE_LEASES` leases (as this member saw them, monotonic clock). Those
        unowned longer are stuck: warned once each, counted in a gauge, named by :meth:`health`.
        """
        alive = {a.analyzer_id for a in live}
        now = time.monotonic()
        since = {
            camera: self._unowned_since.get(camera, now)
            for camera in cameras
            if owners.get(camera) is None and target[camera] in alive
        }
        self._unowned_since = since
        bound = STUCK_MOVE_LEASES * self.lease_seconds
        stuck = {c: str(target[c]) for c, t in since.items() if now - t >= bound}
        for camera in sorted(stuck.keys() - self._stuck.keys()):
            log.warning(
                "cluster: camera %s is placed on %s, which has not claimed it for %g s: it is "
                "analysed by nobody, and other moves no longer wait for it",
                camera,
                stuck[camera],
                bound,
            )
        for camera in sorted(self._stuck.keys() - since.keys()):
            log.warning("cluster: camera %s has an owner again", camera)
        self._stuck = stuck
        CAMERAS_UNOWNED.labels(analyzer=self.analyzer_id).set(len(stuck))
        return frozenset(since.keys() - stuck.keys())

    def _note_disagreement(self, digests: Mapping[str, str | None]) -> None:
        """Warn once per analyzer given other cameras than this one (see the module docstring)."""
        mine = self._site_digest()
        others = frozenset(
            a
            for a, digest in digests.items()
            if a != self.analyzer_id and digest not in (None, mine)
        )
        for analyzer in sorted(others - self._disagreeing):
            log.warning(
                "cluster: analyzer %s was given other cameras than %s (another site file): a "
                "camera placed on an analyzer that does not know it is analysed by nobody",
                analyzer,
                self.analyzer_id,
            )
        self._disagreeing = others

    def _rebalance(
        self, cameras: Sequence[str], target: Mapping[str, str | None], moving: frozenset[str]
    ) -> None:
        """Release one camera placement puts elsewhere, unless a move is under way (``moving``,
        from :meth:`_note_unowned`: a stuck one does not count).

        Never to an analyzer that has a stuck camera, until it claims it: it has shown that its
        claims fail (or that it lacks the camera), and each camera handed to it would be stuck
        in turn, one every few leases, until its whole share was analysed by nobody. The moves
        to the other analyzers go on."""
        if moving:
            return
        failing = set(self._stuck.values())
        for camera in sorted(self._held):
            goes_to = target.get(camera, self.analyzer_id)
            if goes_to != self.analyzer_id and goes_to not in failing and camera in cameras:
                log.info("cluster: %s hands camera %s to %s", self.analyzer_id, camera, goes_to)
                self._give_back(camera, "rebalance")
                return

    def _renew(self) -> None:
        """Heartbeat and extend every held lease (the renew thread's only work)."""
        started = time.monotonic()
        with self._transaction() as session:
            if not self._heartbeat(session):
                if not self._id_taken:
                    log.error(
                        "cluster: another live process heartbeats as analyzer %s: this one "
                        "claims nothing and lets its cameras go until that stops",
                        self.analyzer_id,
                    )
                self._id_taken = True
                raise StorageError(
                    f"analyzer id {self.analyzer_id!r} is in use by another live process"
                )
            self._id_taken = False
            held = {camera: h.epoch for camera, h in list(self._held.items())}
            renewed = leases.renew(session, self.analyzer_id, held, self.lease_seconds)
        self._next_renew = started + self.renew_every
        deadline = started + self.lease_seconds - self.margin
        with self._lock:
            for camera, epoch in held.items():
                current = self._held.get(camera)
                if current is None or current.epoch != epoch:
                    continue
                if renewed.get(camera) == epoch:
                    current.deadline = max(current.deadline, deadline)
                else:
                    log.warning(
                        "cluster: %s lost camera %s (epoch %d no longer its lease)",
                        self.analyzer_id,
                        camera,
                        epoch,
                    )
                    self._lose(camera)

    def _claim(self, camera: str) -> None:
        """Claim the camera's lease, closing whatever incidents of it are still open.

        A takeover closes the previous owner's open incidents as ``analyzer_lost``; any other
        claim closes those a previous analyzer left open (a graceful stop that could not write,
        or a single-host ``serve`` before the cluster) as ``left_open``. The chain lock is taken
        before the lease row, the order of every incident write (which holds the chain lock and
        then reads the lease row), so the two never wait on each other in a circle.
        """
        started = time.monotonic()
        found: Takeover | None = None
        continued: tuple[str, ...] = ()
        try:
            with self._transaction(self.claim_lock_timeout) as session:
                hash_chain.lock_head(session)
                locked = leases.lock_claimable(session, self.analyzer_id, camera)
                if locked is None:
                    return
                if locked.previous_owner is not None:
                    found = take_over(session, self._incidents, self.analyzer_id, locked)
                else:
                    record_handover(session, self.analyzer_id, locked)
                    close_left_open(session, self._incidents, camera)
                    if locked.released_at is not None:  # a graceful handover: continue them
                        since = float(locked.released_at) - self.release_timeout - _CLOCK_SLACK
                        continued = handed_over(session, camera, since)
                epoch = leases.claim(session, self.analyzer_id, locked, self.lease_seconds)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, DBAPIError) and _sqlstate(cause) == _LOCK_NOT_AVAILABLE:
                log.info("cluster: chain busy, claim of camera %s left to the next round", camera)
                return
            raise
        with self._lock:
            late = self._stopping.is_set() or self._draining.is_set()
            if not late:
                if continued:
                    self.fence.taken_over(camera, continued)
                self._own(camera, epoch, started, found)
        if late:  # stopped or draining meanwhile: never start it, give the lease straight back
            self._release_row(camera, epoch)

    def _own(self, camera: str, epoch: int, started: float, found: Takeover | None) -> None:
        """Hold a claimed camera and have it started (under the lock)."""
        self._held[camera] = _Held(epoch, started + self.lease_seconds - self.margin)
        CAMERAS_OWNED.labels(analyzer=self.analyzer_id).set(len(self._held))
        # At 0 while held: the write a stale owner makes after losing it is then an increase
        # (a series born at 1 by that write was invisible to increase() and its alert).
        FENCED_WRITES.labels(camera=camera)
        if found is not None:
            TAKEOVERS.labels(analyzer=self.analyzer_id).inc()
            self.fence.taken_over(camera, found.closed_incidents)
            log.warning(
                "cluster: %s took camera %s over from %s (epoch %d, %d open incident(s) "
                "closed as analyzer_lost, %.1f s uncovered)",
                self.analyzer_id,
                camera,
                found.previous_owner,
                epoch,
                len(found.closed_incidents),
                found.gap_ended_at - found.gap_started_at,
            )
        self._submit(self._listener.acquired, camera, epoch, found)

    def _give_back(self, camera: str, reason: str, timeout: float | None = None) -> None:
        """Stop the camera while still its owner, then release its lease.

        Waits for the stop at most ``timeout`` (``release_timeout``) without holding the lock;
        the renew thread keeps every lease, this one's included, alive meanwhile. A stop that
        outlasts it counts as ``lost``: the camera is forgotten (its writes fenced) and its
        lease released; it is not claimed again until the stop returns.
        """
        with self._lock:
            held = self._held.get(camera)
            if held is None or camera in self._settling:
                return
            done = self._stop(camera, reason)
        try:
            done.result(timeout=self.release_timeout if timeout is None else timeout)
            late = False
        except FutureTimeout:
            late = True
            log.warning(
                "cluster: %s: camera %s did not stop (%s) within %g s: treated as lost",
                self.analyzer_id,
                camera,
                reason,
                self.release_timeout if timeout is None else timeout,
            )
        with self._lock:
            if self._held.get(camera) is not held:
                return  # lost meanwhile (deadline passed): counted there
            self._held.pop(camera)
            self._count_release("lost" if late else reason)
        # a camera removed or disabled was stopped on purpose: its next claim records no gap
        self._release_row(camera, held.epoch, handover=reason != "removed")

    def _release_row(self, camera: str, epoch: int, *, handover: bool = True) -> None:
        try:
            with self._transaction() as session:
                leases.release(session, self.analyzer_id, camera, epoch, handover=handover)
        except StorageError as exc:
            log.warning("cluster: cannot release camera %s (it will expire): %s", camera, exc)

    def _lose(self, camera: str) -> None:
        """Forget the camera first (writes are fenced from now on), then have it stopped
        (queued: this never waits for the listener; a stop already under way is not repeated).
        Counted towards a hold-off unless stopping or draining (a drain past its time)."""
        with self._lock:
            if self._held.pop(camera, None) is None:
                return
            self._count_release("lost")
            if not (self._stopping.is_set() or self._draining.is_set()):
                self._note_loss()
            if camera not in self._settling:
                self._stop(camera, "lost")

    def _note_loss(self) -> None:
        """Count a lost camera towards a hold-off; warn when one starts (under the lock)."""
        start = self._hold_off.lost()
        if start is None:
            return
        # (waived or not as the last round found: the next round that reaches the database
        # decides again, see _note_hold_off)
        HELD_OFF.labels(analyzer=self.analyzer_id).set(int(self.held_off()))
        log.warning(
            "cluster: %s lost its leases %d times in %.0f s (its database link keeps dropping): "
            "it claims no camera for %g s, so that the other analyzers keep its cameras rather "
            "than taking them over again at its next drop (which closes their open incidents "
            "as analyzer_lost each time)%s",
            self.analyzer_id,
            start.losses,
            start.within,
            start.seconds,
            ", unless no other analyzer may run them (as at its last look)" if self._waived else "",
        )

    def _stop(self, camera: str, reason: str) -> Future[None]:
        """Queue ``released`` (under the lock); the camera is settling until it returns."""
        done = self._submit(self._listener.released, camera, reason)
        self._settling[camera] = done

        def settled(_: Future[None]) -> None:
            with self._lock:
                if self._settling.get(camera) is done:
                    del self._settling[camera]

        done.add_done_callback(settled)
        return done

    def _submit(self, method: Callable[..., None], *args: object) -> Future[None]:
        """Run one listener call on the listener thread, in order; never under the lock."""
        calls = self._calls
        if calls is None:
            raise RuntimeError("cluster member not started")
        try:
            return calls.submit(self._call, method, *args)
        except RuntimeError:  # stopped meanwhile: run it here rather than lose a stop
            done: Future[None] = Future()
            self._call(method, *args)
            done.set_result(None)
            return done

    def _count_release(self, reason: str) -> None:
        RELEASES.labels(analyzer=self.analyzer_id, reason=reason).inc()
        CAMERAS_OWNED.labels(analyzer=self.analyzer_id).set(len(self._held))

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for camera, held in list(self._held.items()):
            if now >= held.deadline:
                log.warning(
                    "cluster: %s could not renew camera %s in time: stopping it before its "
                    "lease expires",
                    self.analyzer_id,
                    camera,
                )
                self._lose(camera)

    def _watch(self) -> None:
        """Drop cameras past their deadline even while the renew thread is stuck in a database
        call."""
        while not self._stopping.wait(min(0.1, self.margin / 4)):
            self._drop_expired()

    def _call(self, method: Callable[..., None], *args: object) -> None:
        try:
            method(*args)
        except Exception:  # a listener bug must not stop the membership
            log.exception("cluster: listener %s%r failed", method.__name__, args)


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
