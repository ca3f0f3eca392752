"""Turn rule events into stored incidents with evidence.

The rule engine says, frame by frame, that an episode STARTED, is ONGOING or ENDED. The manager
keeps one small record per open episode, writes the incident when it opens and closes, and in
between only when the peak confidence has risen and the last write is a few seconds old: every write
is I/O on the analysis path. The evidence still is the annotated frame of the STARTED event; it is
replaced (atomically, same path) by a clearly more confident frame, at most once per
``still_interval``.

Heads are hidden on the still (:mod:`safewatch.incidents.privacy`, per camera) before the overlay
is drawn. With an :class:`~safewatch.incidents.recorder.EvidenceRecorder`, the manager also hands
it every frame (call :meth:`IncidentManager.handle` for every frame, with or without events), asks
it for the stills and a clip when an incident opens and tells it when the incident ends; the
recorder draws, encodes and writes them on its own thread and then points the stored incident at
them. The frame that opens an incident therefore pays only for the row (one transaction, which
also queues its alerts): on 2 live cameras the still's encode, synced write and chain entry were
most of that frame's time (``bench/runtime.py latency``, ``docs/performance.md``). The OPENED
change carries no still yet; the row gets it a few milliseconds later, and alert messages that
attach it look it up then (:class:`safewatch.alerts.message.Composer`). Without a recorder (a
bare manager) the still is written on the calling thread before the row, as the row's first copy.

Every ``hold_interval`` of an open episode the manager notes the frame time it still held
(:meth:`~safewatch.storage.IncidentRepository.hold`, one small write, not chained), so an incident
left open by a process that died is closed at start-up at that time
(:mod:`safewatch.incidents.abandoned`).

A database that cannot be written (a locked SQLite file, a PostgreSQL restart) loses nothing that
the manager holds. After a refused write the manager leaves the database alone for 1 s of the
process's clock (one wait holds every camera: they share one thread, and their frame clocks
differ), then twice as long after each further refusal (at most 30 s), so an outage costs one
wait per try, not one per write, camera and frame. Meanwhile incidents live in memory: an opening
or closing waits on its episode (with its real start and end, and the reason it closes), updates
and ``hold`` notes are made by the next write; the frame's other events go on. When a try
succeeds the waiting writes go through, each opening on a frame of its own camera, with its
still taken from the frame that opened it (kept for that). An opening written more than 2 s (of
its camera's frames) late gets no clip: it would be cut from the frames buffered then, a later
moment. Each refusal is reported to ``on_write_failure`` (the live runtime counts
them in ``safewatch_runtime_errors_total{stage="storage"}``) and warned about at most every 10 s;
:attr:`IncidentManager.unsaved` and :attr:`IncidentManager.refused` say what waits (``/readyz``
is ``degraded`` and ``safewatch_incidents_unsaved`` counts them).
What is not written before the process stops is lost with it.

Ids come from :func:`safewatch.domain.incident_id`, so replaying events, to this manager or to a
fresh one after a restart, stores nothing twice. Memory is bounded: open records live only as long
as their episode, and the ids of recently closed episodes (kept to ignore late re-deliveries) are
capped. One manager serves any number of cameras but is not thread-safe: give each pipeline thread
its own, over a shared repository.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from safewatch.config.site import PrivacyConfig
from safewatch.domain import Frame, Incident, Phase, RuleEvent, TrackedFrame, Zone, incident_id
from safewatch.errors import FencedWrite, NotFound, StorageError
from safewatch.incidents.annotate import draw_overlay
from safewatch.incidents.evidence import EvidenceStore
from safewatch.incidents.privacy import anonymise_heads
from safewatch.incidents.recorder import EvidenceRecorder
from safewatch.storage import IncidentRepository

__all__ = ["ChangeKind", "IncidentChange", "IncidentManager"]

_log = logging.getLogger(__name__)

_DEFAULT_PRIVACY = PrivacyConfig()

NO_TRACK = -1
"""Subject id used in the incident id when an event names no track (e.g. zone occupancy)."""


class ChangeKind(StrEnum):
    """What happened to an incident in one :meth:`IncidentManager.handle` call."""

    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """An incident as just stored, and why it was stored (for alerts and live views)."""

    incident: Incident
    kind: ChangeKind


@dataclass(slots=True)
class _Episode:
    """What the manager remembers of one open incident."""

    incident: Incident
    persisted_at: float
    persisted_peak: float
    still_at: float
    still_confidence: float
    held_at: float = float("-inf")
    """Frame time last written as ``held_until`` (a new incident's is written with its row)."""
    unsaved: bool = False
    """Its opening or closing was not written (the database refused or was known to be down):
    ``incident`` (ended or not) is still to be stored."""
    opened: bool = True
    """Its row was written (or adopted): the recorder has its still and clip in hand."""
    reason: str | None = None
    """Why it closes, kept for a closing write that has to wait (``closing``'s reason)."""
    opening: tuple[Frame, TrackedFrame] | None = None
    """The frame that opened it, kept while its opening waits for the database: the still is
    taken from it when the write goes through, not from the frame of that moment, on which
    the person may have left the zone or put the hat back on."""


_RETRY_MAX = 30.0
"""Longest wait (frame clock) between two tries of the database once it refused a write."""
_QUIET_SECONDS = 10.0
"""Least time (seconds of the process's clock) between two warnings about refused writes."""
_LATE_EVIDENCE = 2.0
"""Seconds after its start within which a delayed opening still gets the recorder's clip; later,
it would show a later moment (the clip is cut from the frames buffered then). Its still comes
from the frame that opened it, kept for that, however late."""


class IncidentManager:
    """Open, update and close incidents from rule events.

    Args:
        repository: Where incidents are stored.
        evidence: Where stills are written.
        zones_for_camera: Zones to draw on a camera's stills without a recorder (the recorder
            draws its own ``zones_for``); ``None`` draws none.
        persist_interval: Minimum seconds (frame clock) between two writes of a rising peak.
        still_interval: Minimum seconds between two rewrites of an incident's still.
        still_margin: How much more confident a frame must be to replace the still.
        remember_closed: How many closed incident ids are kept to ignore late re-deliveries.
        hold_interval: Seconds (frame clock) between two notes that an open incident still
            holds: how much of its end a crash may lose, for one small write each.
        privacy_for: A camera's privacy settings (``SiteConfig.privacy_for``); default: blur.
        recorder: Writes clips, clean stills and sealed originals; ``None`` writes only the
            annotated still.
        on_write_failure: Told of each failed database write (the runtime counts them); the
            manager keeps what it could not write and tries again (module doc).
        clock: The process clock the wait after a refused write runs on (tests drive it).
    """

    def __init__(
        self,
        repository: IncidentRepository,
        evidence: EvidenceStore,
        zones_for_camera: Callable[[str], Sequence[Zone]] | None = None,
        *,
        persist_interval: float = 5.0,
        still_interval: float = 10.0,
        still_margin: float = 0.1,
        remember_closed: int = 4096,
        hold_interval: float = 2.0,
        privacy_for: Callable[[str], PrivacyConfig] | None = None,
        recorder: EvidenceRecorder | None = None,
        on_write_failure: Callable[[StorageError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._on_write_failure = on_write_failure
        self._clock = clock
        self._down_until = float("-inf")
        """Process-clock time before which the database is not tried (it refused the last
        write). On the process clock, not a frame's: one thread serves every camera, so one
        wait must hold them all, and cameras' clocks differ (an archive replayed on its file's
        clock may be years behind a live camera's)."""
        self._backoff = 1.0
        self._refused: StorageError | None = None
        """The last write's refusal, until a write goes through (``refused``)."""
        self._last_seen: dict[str, float] = {}
        """Per camera, its latest frame time (to judge how late a delayed opening is)."""
        self._warned_at = float("-inf")
        self._quiet_failures = 0
        self._evidence = evidence
        self._zones_for_camera = zones_for_camera
        self._persist_interval = persist_interval
        self._still_interval = still_interval
        self._still_margin = still_margin
        self._remember_closed = remember_closed
        self._hold_interval = hold_interval
        self._privacy_for = privacy_for or (lambda _camera: _DEFAULT_PRIVACY)
        self._recorder = recorder
        self._open: dict[str, _Episode] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._fenced_epochs: set[tuple[str, int | None]] = set()
        self._close_reasons: dict[str, str] = {}

    @property
    def open_incidents(self) -> list[Incident]:
        """Incidents whose episode has not ended yet (latest in-memory state)."""
        return [episode.incident for episode in self._open.values()]

    @property
    def unsaved(self) -> int:
        """How many incidents wait in memory for their opening or closing to be stored.

        Read by ``/readyz`` and ``/metrics`` on other threads (the episodes' ``unsaved`` flags
        are the one record of what waits): a full disk or a locked database stopped incident
        storage, and with it the alerts queued in the same transaction, while the server said
        it was ready. ``list()`` copies the values in one step, so a write on the rules thread
        cannot change the dict under the count.
        """
        return sum(1 for episode in list(self._open.values()) if episode.unsaved)

    @property
    def refused(self) -> StorageError | None:
        """The database's refusal of the last incident write; ``None`` once one goes through,
        or once nothing waits any more (:meth:`forget_camera` dropped what did)."""
        return self._refused

    def handle(
        self, events: Sequence[RuleEvent], tracked: TrackedFrame, frame: Frame
    ) -> list[IncidentChange]:
        """Apply one frame's rule events (call it for every frame, even one without events).

        Args:
            events: The rule engine's events for this frame.
            tracked: The tracker's output for the frame (drawn on the still).
            frame: The frame itself (its pixels become evidence).

        Returns:
            One change per incident that was stored by this call: first the unsaved writes that
            went through now, then the events', in event order. A replayed or re-delivered
            event that changes nothing returns nothing.

        A database that cannot be written raises nothing here: the write is kept and tried again
        on later frames (module doc). Evidence write failures are logged and the incident is
        stored without a still: the record matters more than the picture.
        """
        if self._recorder is not None:
            self._recorder.observe(frame, tracked)
        self._last_seen[frame.camera_id] = frame.timestamp
        changes = self._retry_unsaved(frame, tracked)
        for event in events:
            try:
                change = self._apply(event, tracked, frame)
            except FencedWrite as refused:
                self._fenced(refused)
                continue
            except StorageError as failed:
                self._write_failed(failed)
                continue
            if change is not None:
                changes.append(change)
        return changes

    def retry(self, frame: Frame, tracked: TrackedFrame) -> list[IncidentChange]:
        """Try the writes that wait, with no new frame's events (see :meth:`handle`).

        For the rules stage's silence sweep, with a camera's last frame: writes that wait are
        otherwise tried on the next frame of any camera, and when every camera is dark (a
        site-wide network outage, which often takes the database with it) none comes, so the
        incidents a refused close left open stayed open, unseen, until a camera came back.
        """
        return self._retry_unsaved(frame, tracked)

    def _writable(self) -> bool:
        """Whether to try the database now: not while it is known to refuse writes, so a locked
        file or an unreachable server costs one wait per try, not one per write, camera and
        frame."""
        return self._clock() >= self._down_until

    def _retry_unsaved(self, frame: Frame, tracked: TrackedFrame) -> list[IncidentChange]:
        """Write the incidents that wait, once the database may be tried again; the first
        refusal stops the round. An opening is written on a frame of its own camera (the
        recorder's still comes from it); a closing on any frame, so a camera that went dark
        does not hold it back."""
        changes: list[IncidentChange] = []
        if not any(episode.unsaved for episode in self._open.values()):
            return changes  # every frame comes here: nothing to copy or try, the usual case
        for key, episode in list(self._open.items()):
            if not self._writable():
                break
            if self._open.get(key) is not episode:
                continue  # fenced away by an earlier write of this round
            if not episode.unsaved:
                continue
            ended = episode.incident.ended_at is not None
            if not ended and episode.incident.camera_id != frame.camera_id:
                continue
            try:
                if ended:
                    closed = self._close(key, episode.incident, frame, tracked)
                    if closed is not None:
                        changes.append(closed)
                else:
                    changes.append(self._save_open(episode, frame, tracked))
            except FencedWrite as refused:
                self._fenced(refused)
            except StorageError as failed:
                self._write_failed(failed)
        return changes

    def _write_failed(self, failed: StorageError) -> None:
        """The database refused a write: report it, and leave it alone for a while (1 s, then
        twice as long after each refusal, at most ``_RETRY_MAX``); warn at most once per
        ``_QUIET_SECONDS``."""
        if self._on_write_failure is not None:
            self._on_write_failure(failed)
        self._refused = failed
        backoff = self._backoff
        self._down_until = self._clock() + backoff
        waiting = sum(1 for episode in self._open.values() if episode.unsaved)
        self._quiet_failures += 1
        if time.monotonic() - self._warned_at >= _QUIET_SECONDS:
            _log.warning(
                "incident database refused %d write(s) (%d incident(s) kept in memory, written "
                "when it is back; next try in %.0f s): %s",
                self._quiet_failures,
                waiting,
                backoff,
                failed,
            )
            self._warned_at = time.monotonic()
            self._quiet_failures = 0
        self._backoff = min(2 * backoff, _RETRY_MAX)

    def _wrote(self) -> None:
        """A write went through: the next refusal waits 1 s again."""
        self._backoff = 1.0
        self._refused = None

    def _fenced(self, refused: FencedWrite) -> None:
        """This process no longer owns the camera (``serve --cluster``): drop its episodes, warn
        once per lost epoch, and never retry (the new owner closes or continues them)."""
        dropped = self.forget_camera(refused.camera_id)
        if (refused.camera_id, refused.held) not in self._fenced_epochs:
            self._fenced_epochs.add((refused.camera_id, refused.held))
            _log.warning(
                "camera %s: no longer its owner, incident writes refused and dropped "
                "(%d open incident(s) left to the new owner): %s",
                refused.camera_id,
                len(dropped),
                refused,
            )

    def close_all(self, at: float) -> list[IncidentChange]:
        """Close every open incident at ``at`` (the last frame's time), e.g. at end of stream.

        An incident whose closing write failed earlier closes at its own end, not at ``at``.

        Raises:
            StorageError: Some incidents could not be stored (each is logged; the others are).
        """
        changes = []
        failed: StorageError | None = None
        for key in list(self._open):
            episode = self._open.get(key)
            if episode is None:
                continue  # fenced away by an earlier write of this loop
            ended = episode.incident.ended_at
            if ended is None:
                ended = max(at, episode.incident.started_at)
            try:
                closed = self._close(
                    key, dataclasses.replace(episode.incident, ended_at=ended), force=True
                )
            except FencedWrite as refused:
                self._fenced(refused)
            except StorageError as error:
                _log.error("incident %s: could not be stored at the stop: %s", key, error)
                failed = failed or error
            else:
                if closed is not None:
                    changes.append(closed)
        if failed is not None:
            raise failed
        return changes

    @contextlib.contextmanager
    def closing(self, camera_id: str, reason: str) -> Iterator[None]:
        """Within the block, incidents of ``camera_id`` that close carry ``reason`` in their
        ``incident.closed`` chain entry (a camera removed or disabled while running: its
        episodes end at its last frame, and the record says why, not only when)."""
        self._close_reasons[camera_id] = reason
        try:
            yield
        finally:
            self._close_reasons.pop(camera_id, None)

    def forget_camera(self, camera_id: str) -> list[Incident]:
        """Drop a camera's open incidents from memory without writing anything.

        For a camera whose ownership this process lost (``serve --cluster``): its new owner
        closes or continues those incidents, and any write from here would be refused by the
        fence anyway. Returns what was dropped, for the log.
        """
        dropped = [
            key for key, episode in self._open.items() if episode.incident.camera_id == camera_id
        ]
        forgotten = [self._open.pop(key).incident for key in dropped]
        if not any(episode.unsaved for episode in self._open.values()):
            # What the refusal held back is gone: /readyz stayed degraded ("0 incident(s) held
            # in memory ... last write refused") until the next write went through, hours later.
            self._refused = None
        return forgotten

    @staticmethod
    def _key(event: RuleEvent) -> str:
        subject = event.track_ids[0] if event.track_ids else NO_TRACK
        return incident_id(event.camera_id, event.rule_id, subject, event.started_at)

    def _apply(
        self, event: RuleEvent, tracked: TrackedFrame, frame: Frame
    ) -> IncidentChange | None:
        key = self._key(event)
        if key in self._closed:
            return None  # late re-delivery of an episode this manager already closed
        episode = self._open.get(key)
        if episode is None:
            if event.phase is Phase.STARTED:
                return self._open_incident(key, event, tracked, frame)
            # ONGOING or ENDED with no record (e.g. after a restart): continue from what is stored.
            episode = self._adopt(key, event)
        if event.phase is Phase.ENDED:
            incident = self._raise_peak(episode.incident, event)
            return self._close(
                key, dataclasses.replace(incident, ended_at=event.at), frame, tracked
            )
        return self._update(episode, event, tracked, frame)

    def _new_incident(self, key: str, event: RuleEvent, snapshot: str | None) -> Incident:
        return Incident(
            id=key,
            camera_id=event.camera_id,
            rule_id=event.rule_id,
            rule_kind=event.rule_kind,
            severity=event.severity,
            track_ids=event.track_ids,
            started_at=event.started_at,
            ended_at=None,
            peak_confidence=event.confidence,
            message=event.message,
            snapshot=snapshot,
            zone_id=event.zone_id,
        )

    def _still(self, key: str, event: RuleEvent, tracked: TrackedFrame, frame: Frame) -> str | None:
        """Take the incident's still from this frame (the incident's row must exist).

        Returns:
            The still's key to set on the in-memory incident, or ``None``: with a recorder the
            still is drawn and stored on the evidence thread, which sets it on the stored row
            itself; without one it is written here, and ``None`` means it failed.
        """
        if self._recorder is None:
            return self._sync_still(key, event, tracked, frame)
        self._recorder.record_still(
            key,
            frame,
            tracked,
            camera_id=event.camera_id,
            at=event.started_at,
            highlight=event.track_ids,
        )
        return None

    def _sync_still(
        self, key: str, event: RuleEvent, tracked: TrackedFrame, frame: Frame
    ) -> str | None:
        """Write the annotated still on this thread (no recorder); its key, or None on failure."""
        zones = self._zones_for_camera(frame.camera_id) if self._zones_for_camera else ()
        try:
            hidden = anonymise_heads(frame.image, tracked, self._privacy_for(frame.camera_id))
            image = draw_overlay(hidden, tracked, zones, highlight=set(event.track_ids))
            still = self._evidence.write_still(
                key, image, camera_id=event.camera_id, at=event.started_at
            )
        except (StorageError, ValueError) as exc:
            _log.warning("incident %s: no evidence still: %s", key, exc)
            return None
        return still

    def _open_incident(
        self, key: str, event: RuleEvent, tracked: TrackedFrame, frame: Frame
    ) -> IncidentChange | None:
        snapshot = None
        if self._recorder is None:
            snapshot = self._sync_still(key, event, tracked, frame)  # the row's first copy has it
        incident = self._new_incident(key, event, snapshot)
        taken = snapshot is not None or self._recorder is not None
        episode = self._open[key] = _Episode(
            incident=incident,
            persisted_at=event.at,
            persisted_peak=incident.peak_confidence,
            still_at=event.at,
            still_confidence=event.confidence if taken else -1.0,
            held_at=event.at,
            unsaved=True,
            opened=False,
            opening=(frame, tracked),
        )
        if not self._writable():
            return None  # kept; written once the database may be tried again
        return self._save_open(episode, frame, tracked)

    def _save_open(
        self, episode: _Episode, frame: Frame | None, tracked: TrackedFrame | None = None
    ) -> IncidentChange:
        """Write a new incident's row, then ask the recorder for its still and clip.

        Raises:
            StorageError: Not written; the episode stays unsaved, to be tried again.
        """
        incident = episode.incident
        # Its alerts are queued here, before any still work. The row notes that it held at the
        # opening event: its start lies min_duration earlier, and a process killed before the
        # first hold note (2 s) would otherwise have it closed 0 s after it started.
        self._repository.upsert(incident, held_until=episode.held_at)
        self._wrote()
        episode.unsaved = False
        self._evidence_of_opened(episode, frame, tracked)
        # INFO: `serve` shows these in its console, so an operator sees protection working.
        _log.info(
            "incident opened: camera %s, rule %s (%s): %s [%s]",
            incident.camera_id,
            incident.rule_id,
            incident.severity,
            incident.message,
            incident.id,
        )
        return IncidentChange(incident, ChangeKind.OPENED)

    def _evidence_of_opened(
        self, episode: _Episode, frame: Frame | None, tracked: TrackedFrame | None
    ) -> None:
        """Once its row exists: the recorder's still and clip; a clip never precedes its row.

        The still comes from the frame that opened the incident, kept for a delayed write
        however late it is (before, one written more than ``_LATE_EVIDENCE`` late got no still
        at all, though the right frame was in hand), or else from ``frame`` when not late. A row
        written more than ``_LATE_EVIDENCE`` after the incident started gets no clip: it would
        be cut from the frames buffered now, a later moment."""
        episode.opened = True
        incident = episode.incident
        seen = self._last_seen.get(incident.camera_id)  # its own camera's clock
        late = seen is None or seen - episode.still_at > _LATE_EVIDENCE
        if episode.opening is not None:
            frame, tracked = episode.opening
            episode.opening = None
        elif late:
            frame = tracked = None  # only a later moment is in hand
        if self._recorder is None:
            return
        if frame is not None and tracked is not None and frame.camera_id == incident.camera_id:
            self._recorder.record_still(
                incident.id,
                frame,
                tracked,
                camera_id=incident.camera_id,
                at=incident.started_at,
                highlight=incident.track_ids,
            )
        if late:
            _log.warning(
                "incident %s: stored late (the database refused it): no clip, it would show a "
                "later moment",
                incident.id,
            )
            return
        self._recorder.open_clip(incident)

    def _adopt(self, key: str, event: RuleEvent) -> _Episode:
        """Resume an episode that opened before this manager existed, keeping its stored still.

        With the database unreadable (a restart during an outage), the episode goes on from the
        event alone, as one never stored: its writes are kept and retried like any refused
        write, and the stored row, still included, absorbs them when they go through. Before,
        the read's error dropped the event: an ENDED one left the incident open for good.
        """
        try:
            incident = self._repository.get(key)
        except NotFound:
            incident = self._new_incident(key, event, None)
            persisted_peak = -1.0
        except StorageError as exc:
            _log.warning(
                "incident %s: its stored record cannot be read (%s): going on from this event",
                key,
                exc,
            )
            incident = self._new_incident(key, event, None)
            persisted_peak = -1.0
        else:
            persisted_peak = incident.peak_confidence
        episode = _Episode(
            incident=incident,
            persisted_at=float("-inf"),
            persisted_peak=persisted_peak,
            still_at=event.at,
            still_confidence=float("inf"),  # never replace a still taken before the restart
        )
        self._open[key] = episode
        return episode

    @staticmethod
    def _raise_peak(incident: Incident, event: RuleEvent) -> Incident:
        if event.confidence <= incident.peak_confidence:
            return incident
        return dataclasses.replace(incident, peak_confidence=event.confidence)

    def _update(
        self, episode: _Episode, event: RuleEvent, tracked: TrackedFrame, frame: Frame
    ) -> IncidentChange | None:
        incident = self._raise_peak(episode.incident, event)
        if not episode.opened or not self._writable():
            # No row yet (a still never precedes its row), or no database: memory only; the
            # delayed write stores the incident as it stands then.
            episode.incident = incident
            return None
        if (
            event.confidence >= episode.still_confidence + self._still_margin
            and event.at - episode.still_at >= self._still_interval
        ):
            snapshot = self._still(incident.id, event, tracked, frame)
            if snapshot is not None:
                incident = dataclasses.replace(incident, snapshot=snapshot)
            if snapshot is not None or self._recorder is not None:
                episode.still_at = event.at
                episode.still_confidence = event.confidence
        episode.incident = incident
        if event.at - episode.held_at >= self._hold_interval:
            # If the process dies now, the next start closes the incident at this time.
            self._repository.hold(incident.id, event.at)
            self._wrote()
            episode.held_at = event.at
        due = event.at - episode.persisted_at >= self._persist_interval
        if incident.peak_confidence > episode.persisted_peak and due:
            self._repository.upsert(incident)
            self._wrote()
            episode.persisted_at = event.at
            episode.persisted_peak = incident.peak_confidence
            return IncidentChange(incident, ChangeKind.UPDATED)
        return None

    def _close(
        self,
        key: str,
        incident: Incident,
        frame: Frame | None = None,
        tracked: TrackedFrame | None = None,
        *,
        force: bool = False,
    ) -> IncidentChange | None:
        """Store the ended incident (never ending before it started) and end its clip; one whose
        opening was never stored gets its still (from ``frame``) and clip now, if not too late.

        Returns:
            The change, or ``None`` when the database is known to be down (``force`` tries it
            anyway, as at a stop): the episode keeps the ended incident, to be written later.

        Raises:
            StorageError: Not written; the episode keeps the ended incident, to be tried again.
        """
        if incident.ended_at is not None and incident.ended_at < incident.started_at:
            incident = dataclasses.replace(incident, ended_at=incident.started_at)
        episode = self._open.get(key)
        if episode is None:  # not open here (close_all's caller raced a drop): keep it anyway
            episode = self._open[key] = _Episode(
                incident, float("-inf"), -1.0, incident.started_at, float("inf")
            )
        reason = self._close_reasons.get(incident.camera_id) or episode.reason
        if not force and not self._writable():
            episode.incident, episode.unsaved, episode.reason = incident, True, reason
            return None  # kept; written once the database may be tried again
        try:
            self._repository.upsert(incident, reason=reason)
        except FencedWrite:
            raise
        except StorageError:
            episode.incident, episode.unsaved, episode.reason = incident, True, reason
            raise
        self._wrote()
        if not episode.opened:
            episode.incident = incident
            self._evidence_of_opened(episode, frame, tracked)
        if self._recorder is not None:
            self._recorder.close_clip(incident)
        self._open.pop(key, None)
        self._closed[key] = None
        while len(self._closed) > self._remember_closed:
            self._closed.popitem(last=False)
        lasted = (incident.ended_at or incident.started_at) - incident.started_at
        _log.info(
            "incident closed: camera %s, rule %s after %.1f s [%s]",
            incident.camera_id,
            incident.rule_id,
            lasted,
            incident.id,
        )
        return IncidentChange(incident, ChangeKind.CLOSED)
