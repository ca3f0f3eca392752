"""The message bus: versioned envelopes, one publisher/subscriber protocol, two carriers.

On one host the bus is in-process: the API's :class:`~safewatch.api.live.LiveHub` is the
:class:`~safewatch.bus.protocol.Publisher` that WebSockets read. Under ``serve --cluster`` Redis
carries what is lossy or re-readable between hosts (:mod:`safewatch.bus.redis_streams`): an
incident-change stream that dashboards follow and back-fill from the hash chain, live overlay
metadata over Pub/Sub, and consumer groups for export workers (:mod:`safewatch.bus.export`).
Alerts stay on the transactional outbox, and frames never ride the bus.

Importing this package needs no Redis client; the Redis modules import it when used.
"""

from safewatch.bus.changes import PublishAfterCommit, change_envelope
from safewatch.bus.envelope import (
    BUS_FORMAT,
    INCIDENT_CHANGE,
    LIVE_FRAME,
    BusFormatError,
    Envelope,
    decode,
    encode,
    incident_change,
)
from safewatch.bus.protocol import Publisher, Subscriber

__all__ = [
    "BUS_FORMAT",
    "INCIDENT_CHANGE",
    "LIVE_FRAME",
    "BusFormatError",
    "Envelope",
    "PublishAfterCommit",
    "Publisher",
    "Subscriber",
    "change_envelope",
    "decode",
    "encode",
    "incident_change",
]
