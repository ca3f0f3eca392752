"""What a cluster's API node shows from the bus: the overlay of a camera analysed elsewhere on
the camera WebSocket, and bus-fed incident changes (with their chain seq) on the incident feed,
where the node's own local notices are then ignored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api_support import add_users, client_for, login, make_dashboard, next_message, wait_until
from incident_factories import make_incident
from safewatch.api.dashboard import Dashboard
from safewatch.bus import LIVE_FRAME, Envelope, incident_change


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[tuple[TestClient, Dashboard]]:
    dashboard, storage = make_dashboard(tmp_path)
    add_users(dashboard)
    with client_for(dashboard) as client:
        login(client, "admin")
        yield client, dashboard
    storage.close()


def test_a_camera_analysed_elsewhere_shows_its_relayed_overlay(
    admin: tuple[TestClient, Dashboard],
) -> None:
    client, dashboard = admin
    overlay = {"type": "frame", "camera": "yard", "seq": 41, "tracks": [{"id": 5}]}
    with client.websocket_connect("/api/v1/ws/cameras/yard") as ws:
        next_message(ws, "state")  # the camera feed is subscribed once it sends
        dashboard.live.publish(Envelope(LIVE_FRAME, overlay))
        assert next_message(ws, "frame") == overlay


def test_the_incident_feed_carries_bus_changes_with_their_seq(
    admin: tuple[TestClient, Dashboard],
) -> None:
    client, dashboard = admin
    incident = make_incident(2, camera="yard", peak=0.7)
    dashboard.live.follow_bus()
    with client.websocket_connect("/api/v1/ws/incidents") as ws:
        # the feed subscribes just after accept
        wait_until(lambda: dashboard.live.subscriber_count, 10, step=0.01)
        dashboard.live.publish_incident("opened", incident)  # local: ignored when on the bus
        dashboard.live.publish(incident_change("opened", incident, seq=12))
        message = next_message(ws, "incident")
        assert (message["kind"], message["seq"], message["incident"]["id"]) == (
            "opened",
            12,
            incident.id,
        )
        dashboard.live.publish(incident_change("closed", incident, seq=13))
        assert next_message(ws, "incident")["seq"] == 13  # the ignored local notice never came


def test_a_feed_that_fell_behind_is_told_to_read_its_lists_again(
    admin: tuple[TestClient, Dashboard],
) -> None:
    """More changes at once than a socket's backlog (256): the oldest are dropped for it, and
    after the rest it gets ``{"type": "resync"}``, so the page reads again what it shows
    (shell.js) instead of missing those changes without a word."""
    client, dashboard = admin
    with client.websocket_connect("/api/v1/ws/incidents") as ws:
        wait_until(lambda: dashboard.live.subscriber_count, 10, step=0.01)

        def burst() -> None:  # on the server's loop: the socket sends nothing in between
            for track in range(300):
                dashboard.live.publish_incident("opened", make_incident(track))

        assert client.portal is not None
        client.portal.call(burst)
        sent = [next_message(ws, "incident")["incident"]["track_ids"][0] for _ in range(256)]
        assert sent == list(range(44, 300))  # the newest 256
        dashboard.live.publish_incident("opened", make_incident(1000))  # then one more
        assert next_message(ws, "resync") == {"type": "resync", "dropped": 44}
        assert next_message(ws, "incident")["incident"]["track_ids"] == [1000]
