r"""The small typed messages between the analysis process and its API process.

``safewatch serve`` runs the HTTP server in a process of its own (:mod:`safewatch.runtime.api_link`
explains why, with the measurements). Only these frozen dataclasses travel on the pipe between the
two, pickled; the pixels of live frames stay in shared memory (:mod:`safewatch.runtime.shm`), like
a decode worker's frames.

From the analysis process (the server) to the API process:

* :class:`LiveFramePush`: a camera's newest analysed frame (tracks, events, where its pixels lie);
* :class:`IncidentPush`: an incident the pipeline opened, updated or closed;
* :class:`CameraGone`: a camera was removed or stopped (its last frame is forgotten);
* :class:`RulesPush`: the rule generation in force and the latest reload outcome;
* :class:`SitePush`: the site file in force after a reload;
* :class:`Reply`: the answer to a :class:`Request`;
* :class:`Shutdown`: stop serving and exit;
* :class:`Ping`: a liveness question, answered with :class:`Pong` from the API process's event
  loop (a process that is stopped or whose loop is stuck answers nothing and is restarted).

From the API process to the server: :class:`ApiReady` once it serves, then :class:`Request`\ s
(readiness, liveness, metrics, a rule reload, an acknowledged rule removal), each answered by one
:class:`Reply` with the same ``request_id``, and :class:`Pong`\ s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from safewatch.config.loader import LoadedSite
from safewatch.domain import Incident, RuleEvent, TrackedFrame
from safewatch.rules.reload import ReloadStatus, RuleGeneration
from safewatch.runtime.health import Liveness, Readiness
from safewatch.runtime.shm import RingSpec, SlotRef

__all__ = [
    "ApiBound",
    "ApiReady",
    "CameraGone",
    "IncidentPush",
    "LiveFramePush",
    "Ping",
    "Pong",
    "Reply",
    "Request",
    "RequestKind",
    "RulesPush",
    "ServerBound",
    "Shutdown",
    "SitePush",
]


@dataclass(frozen=True, slots=True, eq=False)
class LiveFramePush:
    """A camera's newest analysed frame; its pixels are in ``ring`` at ``slot``.

    Attributes:
        tracked: Tracks and detections of the frame.
        events: The rule events of the frame (the overlay marks tracks in violation).
        ring: The live ring of the camera (the API process attaches to it once).
        slot: Where the frame's pixels lie; a slot overwritten before it is read is skipped (a
            newer frame of the camera is on its way).
        published_at: When the decode worker published the frame (server wall clock; ``None``:
            unknown), for the blurred video's judgement of how old its heads are.
    """

    tracked: TrackedFrame
    events: tuple[RuleEvent, ...]
    ring: RingSpec
    slot: SlotRef
    published_at: float | None = None


@dataclass(frozen=True, slots=True)
class IncidentPush:
    """The pipeline stored an incident change (``opened``, ``updated`` or ``closed``)."""

    kind: str
    incident: Incident


@dataclass(frozen=True, slots=True)
class CameraGone:
    """A camera stopped (removed from the site or ended): forget its last frame."""

    camera_id: str


@dataclass(frozen=True, slots=True)
class RulesPush:
    """The rule generation judging frames now and the latest reload outcome."""

    generation: RuleGeneration
    status: ReloadStatus


@dataclass(frozen=True, slots=True)
class SitePush:
    """The site file in force (the latest valid one)."""

    site: LoadedSite


RequestKind = Literal["liveness", "readiness", "metrics", "reload_rules", "acknowledge_dropped"]


@dataclass(frozen=True, slots=True)
class Request:
    """The API process asks the server something; answered by a :class:`Reply`.

    Attributes:
        args: The rule ids of ``acknowledge_dropped``; empty for the other kinds.
    """

    request_id: int
    kind: RequestKind
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to :class:`Request` ``request_id``.

    Attributes:
        request_id: The request answered.
        value: ``Liveness``, ``Readiness``, the metrics text, or the :class:`RulesPush` after a
            reload (so the API sees the new generation before its request returns).
        error: Set instead of ``value`` when the server failed to answer (one line).
    """

    request_id: int
    value: Liveness | Readiness | bytes | RulesPush | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop serving: finish open requests, then exit."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Are you serving? Answer :class:`Pong` with the same ``seq`` from the event loop."""

    seq: int


ApiBound = (
    LiveFramePush | IncidentPush | CameraGone | RulesPush | SitePush | Reply | Shutdown | Ping
)
"""What the server sends to the API process."""


@dataclass(frozen=True, slots=True)
class ApiReady:
    """The API process serves (sent once, after its HTTP server accepts connections)."""

    pid: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to :class:`Ping` ``seq``, sent by a callback on the HTTP server's event loop."""

    seq: int


ServerBound = Request | ApiReady | Pong
"""What the API process sends to the server."""
