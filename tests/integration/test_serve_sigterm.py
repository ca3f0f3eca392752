"""``safewatch serve`` as a process: SIGTERM finishes open incidents and their clips, then exits."""

from __future__ import annotations

from pathlib import Path

import pytest
from rtsp_server import RtspCamera, free_port
from serve_support import readyz, serving, stop, wait_for, write_site

from safewatch.incidents.witness import read_latest_witness
from safewatch.storage import IncidentRepository, LocalBlobStore, create_engine_for
from safewatch.storage.hash_chain import read_head

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(120)]


def test_sigterm_closes_open_incidents_and_finishes_their_clips(
    rtsp_camera: RtspCamera, tmp_path: Path
) -> None:
    port = free_port()
    site = write_site(tmp_path, {"yard": rtsp_camera.url}, port=port)
    base = f"http://127.0.0.1:{port}"
    with serving(site) as server:
        wait_for(lambda: readyz(base)["cameras"]["yard"]["ready"], 45, "the camera to stream")
        engine = create_engine_for("sqlite:///data/safewatch.db", tmp_path)
        repository = IncidentRepository(engine)
        open_ones = wait_for(
            lambda: [i for i in repository.list() if i.ended_at is None],
            30,
            "an open incident",
        )
        output = stop(server)
    assert server.returncode == 0, output
    assert "open incident(s) closed" in output
    incidents = {i.id: i for i in repository.list()}
    for incident in open_ones:
        closed = incidents[incident.id]
        assert closed.ended_at is not None, f"{incident.id} still open after SIGTERM"
        assert closed.clip is not None, f"{incident.id} has no clip"
        assert (tmp_path / "data" / "evidence" / closed.clip).stat().st_size > 0
    assert all(i.ended_at is not None for i in incidents.values())
    # The final chain head, witnessed in the evidence store at the clean stop.
    witness = read_latest_witness(LocalBlobStore(tmp_path / "data" / "evidence"))
    assert witness is not None and (witness.seq, witness.hash) == read_head(engine)
    engine.dispose()
