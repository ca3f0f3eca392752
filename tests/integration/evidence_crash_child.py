"""Child process of the crash test: records one long incident until it is killed.

Usage: ``python evidence_crash_child.py WORKDIR READY_BYTES``. It opens the database and evidence
folder in WORKDIR, starts an incident whose episode never ends, prints ``incident <id>`` and then,
once its clip in progress holds READY_BYTES, ``ready``; then it keeps feeding frames (about four
times real time) until the parent kills it with SIGKILL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: evidence_frames

from evidence_frames import coded_frame, episode_events
from safewatch.config.site import EvidenceConfig
from safewatch.incidents import EvidenceRecorder, EvidenceStore, IncidentManager
from safewatch.storage import IncidentRepository, create_engine_for

FPS = 10.0


def main() -> None:
    workdir, ready_bytes = Path(sys.argv[1]), int(sys.argv[2])
    repo = IncidentRepository(create_engine_for("sqlite:///safewatch.db", workdir))
    store = EvidenceStore(workdir / "evidence")
    config = EvidenceConfig(pre_seconds=2.0, post_seconds=2.0, buffer_seconds=4.0)
    recorder = EvidenceRecorder(store, repo, config, on_full="wait")
    manager = IncidentManager(repo, store, recorder=recorder)
    spool = workdir / "evidence" / ".clips-in-progress"
    ready = False
    for i in range(1000):  # 100 s of video, 25 s of wall time: it is killed long before
        frame, tracked = coded_frame(i, FPS)
        events = episode_events(i, FPS, started=20, fired=40, ended=10**9)
        for change in manager.handle(events, tracked, frame):
            print(f"incident {change.incident.id}", flush=True)
        if not ready and i > 40:
            parts = list(spool.glob("*.mp4.part"))
            if parts and parts[0].stat().st_size >= ready_bytes:
                print("ready", flush=True)
                ready = True
        time.sleep(0.025)


if __name__ == "__main__":
    main()
