"""The clips of a camera whose analyzer died (``serve --cluster``): the camera's next owner
finishes them into evidence of the incidents the takeover closed as ``analyzer_lost``.

A real ``kill -9`` of an analyzer process in the middle of two clips (one with seconds of
frames, one opened just before the kill, empty), a real PostgreSQL with the lease, fence and
chain, and the takeover path of :class:`~safewatch.cluster.ClusterMember`: the new owner stores
what decodes of the first clip (evidence written, incident pointed at it, ``clip.recovered``
chained with the reason and the lost analyzer) and chains why the second could not be used
(``clip.unrecoverable``); nothing is left in the spool and the chain verifies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest
from cluster_support import wait_for
from sqlalchemy import text

from safewatch.cluster import ClusterMember, Takeover
from safewatch.cluster.takeover import ANALYZER_LOST
from safewatch.config.site import EvidenceConfig
from safewatch.incidents import EvidenceRecorder, EvidenceStore
from safewatch.incidents.chain import verify_chain
from safewatch.incidents.clips import CLIP_RECOVERED, CLIP_UNRECOVERABLE, PART_SUFFIX
from safewatch.storage import IncidentRepository, create_engine_for
from safewatch.storage.migrate import upgrade

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LEASE = 2.0
CAMERA = "line-2"  # tests/evidence_frames.CAM

# The analyzer that dies: owns the camera, opens two incidents and their clips, feeds 4 s of
# frames to the first (two complete fragments: a keyframe every 2 s), then waits to be killed.
_VICTIM = """
import sys, threading, time
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from evidence_frames import CAM, coded_frame
from safewatch.cluster import ClusterMember
from safewatch.config.site import EvidenceConfig
from safewatch.domain import Incident, Severity
from safewatch.incidents import EvidenceRecorder, EvidenceStore
from safewatch.storage import IncidentRepository, create_engine_for

url, evidence = sys.argv[1], Path(sys.argv[2])
repository = IncidentRepository(create_engine_for(url, evidence))
owned = threading.Event()

class Listener:
    def acquired(self, camera, epoch, takeover):
        owned.set()
    def released(self, camera, reason):
        pass

member = ClusterMember(create_engine_for(url, evidence), "victim", [CAM], Listener(),
                       lease_seconds=%(lease)s, renew_every=0.3, incidents=repository)
member.start()
assert owned.wait(30), "the victim never owned the camera"
store = EvidenceStore(evidence, log=repository)
config = EvidenceConfig(pre_seconds=0, post_seconds=1, buffer_seconds=2, annotate_clips=False)
recorder = EvidenceRecorder(store, repository, config, on_full="wait")
frame, _ = coded_frame(0, 10.0)
def incident(n):
    return Incident(id=f"inc-{n}", camera_id=CAM, rule_id=f"rule-{n}", rule_kind="ppe",
                    severity=Severity("high"), track_ids=(4,), started_at=frame.timestamp,
                    ended_at=None, peak_confidence=0.8, message="no helmet", snapshot=None)
repository.upsert(incident(1))
recorder.open_clip(incident(1))
for index in range(41):
    recorder.observe(*coded_frame(index, 10.0))
repository.upsert(incident(2))
recorder.open_clip(incident(2))
assert recorder.flush(60)
print("ready", flush=True)
time.sleep(600)
"""


def chain_of(engine: object, incident_id: str) -> list[tuple[str, dict[str, object]]]:
    with engine.connect() as connection:  # type: ignore[attr-defined]
        rows = connection.execute(
            text("SELECT kind, detail FROM chain_entries WHERE incident_id = :i ORDER BY seq"),
            {"i": incident_id},
        )
        return [
            (str(r.kind), json.loads(r.detail) if isinstance(r.detail, str) else dict(r.detail))
            for r in rows
        ]


def test_the_new_owner_stores_the_clips_of_a_killed_analyzer(pg_url: str, tmp_path: Path) -> None:
    evidence = tmp_path / "shared-evidence"
    evidence.mkdir()
    engine = create_engine_for(pg_url, tmp_path)
    upgrade(engine)
    tests_dir = str(Path(__file__).resolve().parents[1])
    victim = subprocess.Popen(
        [sys.executable, "-c", _VICTIM % {"lease": LEASE}, pg_url, str(evidence), tests_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    member: ClusterMember | None = None
    recorder: EvidenceRecorder | None = None
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline()
        assert line.strip() == "ready", victim.stderr.read() if victim.stderr else line
        spool = evidence / ".clips-in-progress"
        parts = sorted(p.name for p in spool.glob(f"*{PART_SUFFIX}"))
        assert parts == [f"inc-1{PART_SUFFIX}", f"inc-2{PART_SUFFIX}"]
        # The heir runs already (as a cluster's other analyzers do): its recorder's start-up
        # recovery finds both clips held by their live writer and leaves them.
        repository = IncidentRepository(engine)
        store = EvidenceStore(evidence, log=repository)
        config = EvidenceConfig(pre_seconds=0, post_seconds=1, annotate_clips=False)
        recorder = EvidenceRecorder(store, repository, config, spool=spool, on_full="wait")
        assert sorted(recorder.stats.recovery.busy) == parts
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)
        takeovers: list[Takeover] = []

        class Listener:
            def acquired(self, camera: str, epoch: int, takeover: Takeover | None) -> None:
                assert recorder is not None and takeover is not None
                takeovers.append(takeover)
                recorder.adopt_clips(
                    camera, reason=ANALYZER_LOST, previous_owner=takeover.previous_owner
                )

            def released(self, camera: str, reason: str) -> None:
                pass

        member = ClusterMember(
            create_engine_for(pg_url, tmp_path),
            "heir",
            [CAMERA],
            Listener(),
            lease_seconds=LEASE,
            renew_every=0.3,
            incidents=repository,
        )
        member.start()
        wait_for(lambda: takeovers, 30, "the takeover of the killed analyzer's camera")
        assert takeovers[0].previous_owner == "victim"
        assert sorted(takeovers[0].closed_incidents) == ["inc-1", "inc-2"]
        wait_for(lambda: repository.get("inc-1").clip is not None, 30, "the recovered clip")
        wait_for(
            lambda: any(k == CLIP_UNRECOVERABLE for k, _ in chain_of(engine, "inc-2")),
            30,
            "the unusable clip's reason in the chain",
        )
    finally:
        if victim.poll() is None:
            victim.kill()
        if member is not None:
            member.stop()
    first = repository.get("inc-1")
    assert first.clip is not None
    with av.open(str(evidence / first.clip)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert 20 <= frames <= 41, frames  # the complete fragments, up to what was fed
    kinds = [k for k, _ in chain_of(engine, "inc-1")]
    closed = kinds.index("incident.closed")
    assert kinds[closed:] == [
        "incident.closed",
        "evidence.written",
        "incident.updated",
        CLIP_RECOVERED,
    ]
    detail = chain_of(engine, "inc-1")[-1][1]
    assert detail["reason"] == ANALYZER_LOST and detail["previous_owner"] == "victim"
    assert detail["frames"] == frames
    closing = dict(chain_of(engine, "inc-1"))["incident.closed"]
    assert "analyzer_lost" in str(closing)
    second = repository.get("inc-2")
    assert second.clip is None
    why = dict(chain_of(engine, "inc-2"))[CLIP_UNRECOVERABLE]
    assert why["reason"] == ANALYZER_LOST and "nothing decodable" in str(why["why"])
    assert not list((evidence / ".clips-in-progress").glob(f"*{PART_SUFFIX}")), "a clip left"
    assert recorder is not None
    recorder.close(10)
    report = verify_chain(engine, store.backend)
    assert report.ok, report
    engine.dispose()
