"""Bus envelopes: the codec round-trips, refuses what it cannot read with a specific error, and the
hub (the in-process publisher) turns envelopes into incident notices and remote overlays."""

from __future__ import annotations

import asyncio
import json

import pytest

from safewatch.api.live import LiveHub
from safewatch.bus import (
    BUS_FORMAT,
    LIVE_FRAME,
    BusFormatError,
    Envelope,
    Publisher,
    decode,
    encode,
    incident_change,
)
from safewatch.bus.envelope import incident_from_json, incident_to_json
from safewatch.domain import Incident, IncidentStatus, Severity, incident_id


def make_incident(ended_at: float | None = None) -> Incident:
    return Incident(
        id=incident_id("cam-1", "hardhat", 3, 1000.0),
        camera_id="cam-1",
        rule_id="hardhat",
        rule_kind="ppe",
        severity=Severity.HIGH,
        track_ids=(3, 9),
        started_at=1000.0,
        ended_at=ended_at,
        peak_confidence=0.75,
        message="person #3 without hardhat",
        snapshot="a/b.jpg",
        zone_id="yard",
        status=IncidentStatus.ACKNOWLEDGED,
    )


def test_an_incident_change_round_trips_with_its_seq_and_trace() -> None:
    incident = make_incident(ended_at=1004.5)
    envelope = incident_change(
        "closed", incident, seq=41, actor="ann", trace={"traceparent": "00-ab-cd-01"}, at=5.0
    )
    back = decode(encode(envelope))
    assert back == envelope
    assert back.v == BUS_FORMAT
    assert incident_from_json(back.body["incident"]) == incident


def test_incident_json_is_plain_json() -> None:
    data = incident_to_json(make_incident())
    assert json.loads(json.dumps(data)) == data
    assert data["severity"] == "high" and data["status"] == "acknowledged"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"type":"x","body":{},"trace":{},"at":1}', "format number"),
        (b'{"v":99,"type":"x","body":{},"trace":{},"at":1}', "newer than this safewatch"),
        (b'{"v":1,"type":"x","body":[],"trace":{},"at":1}', "object 'body'"),
        (b'{"v":1,"type":"x","body":{},"seq":0,"trace":{},"at":1}', "positive integer"),
        (b'{"v":1,"type":"x","body":{},"trace":{"a":1},"at":1}', "'trace'"),
        (b'{"v":1,"type":"x","body":{},"trace":{},"at":"now"}', "'at'"),
    ],
)
def test_a_message_it_cannot_read_is_refused_by_name(data: bytes, message: str) -> None:
    with pytest.raises(BusFormatError, match=message):
        decode(data)


def test_a_body_that_is_not_json_is_named_at_encode() -> None:
    with pytest.raises(BusFormatError, match=r"live\.frame envelope is not JSON"):
        encode(Envelope(LIVE_FRAME, {"x": object()}))


def test_a_malformed_incident_is_refused() -> None:
    data = incident_to_json(make_incident())
    del data["rule_id"]
    with pytest.raises(BusFormatError, match="rule_id"):
        incident_from_json(data)


def test_the_hub_is_a_publisher_and_delivers_incident_envelopes() -> None:
    hub = LiveHub(clock=lambda: 7.0)
    assert isinstance(hub, Publisher)
    incident = make_incident()

    async def scenario() -> list[tuple[str, str | None, dict[str, str]]]:
        subscription = hub.subscribe(incidents=True)
        hub.publish(
            decode(
                encode(
                    incident_change(
                        "status", incident, seq=5, actor="bob", trace={"traceparent": "t"}
                    )
                )
            )
        )
        assert await subscription.wait(1.0)
        return [(n.kind, n.actor, n.trace) for n in subscription.notices()]

    assert asyncio.run(scenario()) == [("status", "bob", {"traceparent": "t"})]
    assert hub.incident_version == 1


def test_a_remote_overlay_wakes_the_cameras_viewers_and_is_kept_newest() -> None:
    hub = LiveHub()

    async def scenario() -> bool:
        subscription = hub.subscribe(cameras=["cam-2"])
        hub.publish(Envelope(LIVE_FRAME, {"type": "frame", "camera": "cam-2", "seq": 1}))
        return await subscription.wait(1.0)

    assert asyncio.run(scenario())
    hub.publish(Envelope(LIVE_FRAME, {"type": "frame", "camera": "cam-2", "seq": 2}))
    remote = hub.remote("cam-2")
    assert remote is not None and remote[0] == 2 and remote[1]["seq"] == 2
    assert hub.remote("cam-1") is None
    with pytest.raises(BusFormatError, match="names no camera"):
        hub.publish(Envelope(LIVE_FRAME, {"type": "frame"}))
    hub.forget("cam-2")
    assert hub.remote("cam-2") is None
