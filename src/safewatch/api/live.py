"""The live side channel: the newest analysed frame of each camera, and incident changes, for the
dashboard's live view and incident feed.

The runtime calls :meth:`LiveHub.on_frame` (a :data:`~safewatch.pipeline.step.FrameListener`)
on its rules thread after every analysed frame. That call must be cheap, because it sits in the
analysis path of every camera: it only stores a reference to the frame (each analysed frame already
owns its pixels) and its tracks in the camera's slot, replacing the previous one, and wakes the
subscribers. Nothing is encoded there. Viewers pull: a WebSocket or MJPEG stream asks for the
newest frame when it is ready for one, and the JPEG (heads hidden per the camera's privacy
settings, exactly like evidence) is encoded then, on a worker thread, once per frame however many
viewers watch it. A slow viewer therefore skips frames instead of queueing them, and a camera
nobody watches costs one dictionary assignment per frame.

Under ``serve --cluster`` the hub is the in-process side of the bus (it implements
:class:`~safewatch.bus.protocol.Publisher`): the Redis feeds publish incident changes and other
analyzers' live overlay metadata into it (:meth:`LiveHub.publish`), and :class:`LiveRelay` sends
this analyzer's metadata out, so WebSockets read one hub wherever a camera is analysed.

Subscribers live on the server's asyncio loop; the hub wakes them with ``call_soon_threadsafe``.
Incident changes are queued per subscriber in a bounded deque (oldest dropped, drops counted), so
a stalled browser tab cannot make the server hold unbounded history; the consumer learns of a drop
(:meth:`Subscription.take_dropped`), so that tab is told to read its lists again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2

from safewatch import tracing
from safewatch.bus.envelope import (
    INCIDENT_CHANGE,
    LIVE_FRAME,
    BusFormatError,
    Envelope,
    incident_from_json,
)
from safewatch.bus.protocol import Publisher
from safewatch.config.site import PrivacyConfig
from safewatch.domain import Frame, Image, Incident, RuleEvent, TrackedFrame
from safewatch.domain.events import Phase
from safewatch.incidents.manager import IncidentChange
from safewatch.incidents.privacy import anonymise_heads

__all__ = ["IncidentNotice", "LiveFrame", "LiveHub", "LiveRelay", "Subscription", "live_frame"]

log = logging.getLogger(__name__)

LIVE_JPEG_QUALITY = 75
"""Live frames are looked at, not kept: 75 halves the bytes of evidence quality (90)."""


@dataclass(frozen=True, slots=True, eq=False)
class LiveFrame:
    """The newest analysed frame of one camera.

    Attributes:
        camera_id: The camera.
        seq: The hub's counter for this camera (1, 2, ...), to tell a new frame from one seen.
        tracked: Tracks and detections of the frame.
        image: The frame's pixels (BGR; never modified).
        violating: Track ids that are in a violation episode on this frame.
        rules: ``(rule id, track ids)`` of the episodes running on this frame.
        received_at: Wall-clock seconds when the hub got it.
        published_at: Wall-clock seconds when the server's decode worker published the frame
            (:attr:`~safewatch.domain.Frame.published_at`), or its own ``tracked.timestamp``
            where no worker did. ``received_at - published_at`` is how long its analysis took,
            on one clock: the blurred live video lends its head boxes only to pictures within
            ``stale_seconds`` of it (:func:`~safewatch.api.live_video.live_regions`).
    """

    camera_id: str
    seq: int
    tracked: TrackedFrame
    image: Image
    violating: frozenset[int]
    rules: tuple[tuple[str, tuple[int, ...]], ...]
    received_at: float
    published_at: float


@dataclass(frozen=True, slots=True)
class IncidentNotice:
    """An incident that was opened, updated or closed by the pipeline, or acted on by a person."""

    kind: str
    incident: Incident
    actor: str | None
    at: float
    trace: dict[str, str] = field(default_factory=dict)
    """W3C context of the write that caused it (from a bus envelope), for the broadcast span."""
    seq: int | None = None
    """The change's chain sequence number when it came over the bus (``serve --cluster``)."""


def live_frame(
    tracked: TrackedFrame,
    image: Image,
    events: Sequence[RuleEvent],
    seq: int,
    at: float,
    published_at: float | None = None,
) -> LiveFrame:
    """The :class:`LiveFrame` of an analysed frame (the episodes still running are drawn)."""
    running = [e for e in events if e.phase is not Phase.ENDED]
    return LiveFrame(
        tracked.camera_id,
        seq,
        tracked,
        image,
        frozenset(t for e in running for t in e.track_ids[:1]),
        tuple((e.rule_id, e.track_ids) for e in running),
        at,
        tracked.timestamp if published_at is None else published_at,
    )


@dataclass(eq=False)
class Subscription:
    """One consumer of the hub on an asyncio loop; see :meth:`LiveHub.subscribe`."""

    hub: LiveHub
    loop: asyncio.AbstractEventLoop
    cameras: frozenset[str] | None
    incidents: bool
    backlog: int
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _notices: deque[IncidentNotice] = field(init=False)
    dropped: int = 0
    _told: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._notices = deque(maxlen=self.backlog)

    def _wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the loop is closed: the consumer is gone
            self.hub.unsubscribe(self)

    def _push(self, notice: IncidentNotice) -> None:
        if len(self._notices) == self._notices.maxlen:
            self.dropped += 1
        self._notices.append(notice)
        self._wake()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something new was published; ``False`` on timeout."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def notices(self) -> list[IncidentNotice]:
        """Incident notices queued since the last call, oldest first."""
        taken = list(self._notices)
        self._notices.clear()
        return taken

    def take_dropped(self) -> int:
        """Notices dropped (past ``backlog``, the oldest) since the last call: the consumer never
        sees those changes, so what it shows must be read again (the incident WebSocket sends
        ``{"type": "resync"}``). Call from the consuming loop."""
        dropped = self.dropped
        new, self._told = dropped - self._told, dropped
        return new

    def close(self) -> None:
        """Stop receiving."""
        self.hub.unsubscribe(self)


class LiveHub:
    """Newest frame per camera and a fan-out of incident changes (see the module docstring).

    Args:
        clock: Wall clock (injectable for tests).
        cache_size: Encoded JPEGs kept (one or two per camera is what viewers share).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, cache_size: int = 16) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, LiveFrame] = {}
        self._counts: dict[str, int] = {}
        self._subscribers: set[Subscription] = set()
        self._jpegs: OrderedDict[tuple[str, int, str, int], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._encode_lock = threading.Lock()
        self._incident_version = 0
        self._remote: dict[str, tuple[int, dict[str, Any]]] = {}
        self._follows_bus = False

    # -- publishing (runtime threads) ---------------------------------------------------------

    def on_frame(
        self,
        frame: Frame,
        tracked: TrackedFrame,
        events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        """The runtime's frame listener: publish the frame and the incident changes."""
        self.publish_frame(tracked, frame.image, events, frame.published_at)
        self.on_changes(changes)

    def on_changes(self, changes: Sequence[IncidentChange]) -> None:
        """Publish incident changes made with or without a frame (a camera gone dark or
        stopped closes its incidents with no frame to carry them)."""
        for change in changes:
            self.publish_incident(str(change.kind), change.incident)

    def publish_frame(
        self,
        tracked: TrackedFrame,
        image: Image,
        events: Sequence[RuleEvent] = (),
        published_at: float | None = None,
    ) -> LiveFrame:
        """Make this the camera's newest frame and wake its subscribers (``published_at``: when
        the decode worker published it, see :class:`LiveFrame`)."""
        camera_id = tracked.camera_id
        with self._lock:
            seq = self._counts.get(camera_id, 0) + 1
            self._counts[camera_id] = seq
            frame = live_frame(tracked, image, events, seq, self._clock(), published_at)
            self._latest[camera_id] = frame
            targets = [s for s in self._subscribers if s.cameras is None or camera_id in s.cameras]
        for subscription in targets:
            subscription._wake()
        return frame

    def publish_incident(
        self,
        kind: str,
        incident: Incident,
        actor: str | None = None,
        trace: dict[str, str] | None = None,
    ) -> None:
        """Tell incident subscribers that ``incident`` was opened, updated, closed or acted on.

        Ignored once the hub :meth:`follow_bus`: then every change arrives through
        :meth:`publish`, and a local call as well would show it twice.
        """
        if self._follows_bus:
            return
        self._notify(IncidentNotice(kind, incident, actor, self._clock(), dict(trace or {})))

    def follow_bus(self) -> None:
        """Take incident changes only from the bus from now on (``serve --cluster``: changes
        written by any node, this one's included, come back through the bus feed in chain
        order, each once)."""
        self._follows_bus = True

    def _notify(self, notice: IncidentNotice) -> None:
        with self._lock:
            self._incident_version += 1
            targets = [s for s in self._subscribers if s.incidents]
        for subscription in targets:
            subscription._push(notice)

    def publish(self, envelope: Envelope) -> None:
        """The bus's :class:`~safewatch.bus.protocol.Publisher`: an incident change goes to the
        incident subscribers, another analyzer's live metadata becomes the camera's remote frame;
        other types (from a newer node) are ignored.

        Raises:
            BusFormatError: An incident change whose incident is malformed.
        """
        if envelope.type == INCIDENT_CHANGE:
            body = envelope.body
            actor = body.get("actor")
            self._notify(
                IncidentNotice(
                    str(body.get("kind")),
                    incident_from_json(body.get("incident") or {}),
                    None if actor is None else str(actor),
                    self._clock(),
                    dict(envelope.trace),
                    envelope.seq,
                )
            )
        elif envelope.type == LIVE_FRAME:
            camera_id = envelope.body.get("camera")
            if not isinstance(camera_id, str):
                raise BusFormatError("a live frame message names no camera")
            with self._lock:
                previous = self._remote.get(camera_id)
                self._remote[camera_id] = (
                    1 if previous is None else previous[0] + 1,
                    envelope.body,
                )
                targets = [
                    s for s in self._subscribers if s.cameras is None or camera_id in s.cameras
                ]
            for subscription in targets:
                subscription._wake()

    # -- reading (API) -----------------------------------------------------------------------

    @property
    def incident_version(self) -> int:
        """Incident changes published so far: cached incident queries are valid while it holds
        (:class:`~safewatch.api.query_cache.QueryCache`)."""
        return self._incident_version

    def latest(self, camera_id: str) -> LiveFrame | None:
        """The camera's newest frame, or ``None`` before its first."""
        return self._latest.get(camera_id)

    def remote(self, camera_id: str) -> tuple[int, dict[str, Any]] | None:
        """``(counter, metadata)`` of the camera's newest frame analysed on another node (from
        :meth:`publish`), or ``None`` when none arrived."""
        return self._remote.get(camera_id)

    def forget(self, camera_id: str) -> None:
        """Drop a removed camera's last frame."""
        with self._lock:
            self._latest.pop(camera_id, None)
            self._remote.pop(camera_id, None)

    def subscribe(
        self,
        *,
        cameras: Collection[str] | None = None,
        incidents: bool = False,
        backlog: int = 256,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Subscription:
        """A subscription woken by new frames of ``cameras`` (``None``: all) and, with
        ``incidents``, by incident notices. Call from the consuming loop; :meth:`close` it after.
        """
        subscription = Subscription(
            self,
            loop or asyncio.get_running_loop(),
            None if cameras is None else frozenset(cameras),
            incidents,
            backlog,
        )
        with self._lock:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop waking ``subscription``."""
        with self._lock:
            self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return len(self._subscribers)

    def jpeg(self, frame: LiveFrame, privacy: PrivacyConfig, *, max_width: int = 0) -> bytes:
        """The frame as JPEG with heads hidden per ``privacy``; encoded once, shared by viewers.

        Args:
            frame: From :meth:`latest`.
            privacy: The camera's privacy settings.
            max_width: Scale down to at most this width (0: full size).
        """
        key = (frame.camera_id, frame.seq, privacy.mode, max_width)
        with self._encode_lock:
            cached = self._jpegs.get(key)
            if cached is not None:
                self._jpegs.move_to_end(key)
                return cached
            # No face detector here: it would run on every pushed frame; evidence runs it.
            hidden: Any = anonymise_heads(frame.image, frame.tracked, privacy, faces=False)
            if max_width and hidden.shape[1] > max_width:
                height = round(hidden.shape[0] * max_width / hidden.shape[1])
                hidden = cv2.resize(hidden, (max_width, height), interpolation=cv2.INTER_AREA)
            ok, encoded = cv2.imencode(
                ".jpg", hidden, [cv2.IMWRITE_JPEG_QUALITY, LIVE_JPEG_QUALITY]
            )
            if not ok:  # pragma: no cover - OpenCV encodes every uint8 BGR image
                raise ValueError(f"cannot encode the live frame of {frame.camera_id}")
            data = encoded.tobytes()
            self._jpegs[key] = data
            while len(self._jpegs) > self._cache_size:
                self._jpegs.popitem(last=False)
            return data


_SAME_OBJECT_IOU = 0.5
"""A detection overlapping a track of its label this much is that track (drawn once)."""


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    w = min(ax2, bx2) - max(ax1, bx1)
    h = min(ay2, by2) - max(ay1, by1)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)


def frame_metadata(frame: LiveFrame) -> dict[str, Any]:
    """What the browser draws over a frame: tracks (normalised boxes, ids, labels, PPE state,
    whether in violation), the detections no track accounts for (PPE items; people not yet
    confirmed as tracks, flagged ``unconfirmed``), as JSON-ready data."""
    tracked = frame.tracked
    width = max(1, tracked.width)
    height = max(1, tracked.height)

    def box(xyxy: Sequence[float]) -> list[float]:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        return [
            round(x1 / width, 4),
            round(y1 / height, 4),
            round(x2 / width, 4),
            round(y2 / height, 4),
        ]

    tracks = [
        {
            "id": track.track_id,
            "label": track.label,
            "box": box(track.xyxy),
            "confidence": round(float(track.confidence), 3),
            "ppe": {item: str(state) for item, state in track.attributes.items()},
            "violating": track.track_id in frame.violating,
            "ppe_only": track.ppe_only,
        }
        for track in tracked.tracks
    ]
    det = tracked.detections
    tracked_boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for track in tracked.tracks:
        x1, y1, x2, y2 = (float(v) for v in track.xyxy)
        tracked_boxes.setdefault(track.label, []).append((x1, y1, x2, y2))
    detections = []
    for xyxy, label, conf in zip(det.xyxy, det.label, det.confidence, strict=True):
        name = str(label)
        matched = tracked_boxes.get(name)
        if matched is None:
            detections.append(
                {"label": name, "box": box(xyxy), "confidence": round(float(conf), 3)}
            )
        elif not any(_iou(xyxy, other) >= _SAME_OBJECT_IOU for other in matched):
            # Seen by the detector but not (yet) a confirmed track: its head is hidden like any
            # person's, and without a box the viewer would think the system missed them.
            detections.append(
                {
                    "label": name,
                    "box": box(xyxy),
                    "confidence": round(float(conf), 3),
                    "unconfirmed": True,
                }
            )
    return {
        "type": "frame",
        "camera": frame.camera_id,
        "seq": frame.seq,
        "frame_seq": tracked.seq,
        "timestamp": tracked.timestamp,
        "width": tracked.width,
        "height": tracked.height,
        "tracks": tracks,
        "detections": detections,
        "rules": [{"rule": rule, "tracks": list(ids)} for rule, ids in frame.rules],
    }


class LiveRelay:
    """A frame listener that sends each camera's newest overlay metadata to a bus publisher.

    Under ``serve --cluster`` an analyzer adds it, so an API node can draw the boxes of cameras
    it does not analyse. The rules thread only stores references (newest per camera); the
    relay's thread builds the metadata and publishes at most ``rate`` frames per second per
    camera (the overlay is looked at, not recorded).

    Args:
        publisher: Usually a :class:`~safewatch.bus.redis_streams.RedisPublisher`.
        rate: Frames per second per camera, at most.
    """

    def __init__(self, publisher: Publisher, *, rate: float = 10.0) -> None:
        self._publisher = publisher
        self._interval = 1.0 / rate
        self._cond = threading.Condition()
        self._pending: dict[str, tuple[TrackedFrame, Image, tuple[RuleEvent, ...]]] = {}
        self._seq: dict[str, int] = {}
        self._sent_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-relay", daemon=True)
        self.sent = 0

    def start(self) -> LiveRelay:
        """Start the relay's thread; returns ``self``."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (what is pending is dropped: it is only the newest overlay)."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def on_frame(
        self,
        frame: Frame,
        tracked: TrackedFrame,
        events: Sequence[RuleEvent],
        changes: Sequence[IncidentChange],
    ) -> None:
        """The runtime's frame listener: keep the newest frame of the camera."""
        with self._cond:
            self._pending[tracked.camera_id] = (tracked, frame.image, tuple(events))
            self._cond.notify()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._pending:
                    self._cond.wait(1.0)
                now = time.monotonic()
                due = {
                    camera: item
                    for camera, item in self._pending.items()
                    if now - self._sent_at.get(camera, 0.0) >= self._interval
                }
                for camera in due:
                    del self._pending[camera]
            for camera, (tracked, image, events) in due.items():
                self._seq[camera] = seq = self._seq.get(camera, 0) + 1
                self._sent_at[camera] = now
                metadata = frame_metadata(live_frame(tracked, image, events, seq, time.time()))
                try:
                    self._publisher.publish(Envelope(LIVE_FRAME, metadata, trace=tracing.carrier()))
                    self.sent += 1
                except Exception:  # lossy by design: the next frame replaces it
                    log.debug("cannot relay live metadata of %s", camera, exc_info=True)
            if not due and self._pending:
                self._stop.wait(self._interval / 2)
