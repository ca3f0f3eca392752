"""The end of a file camera: its episodes finish once its last frame is judged.

When a file camera plays to its end its decode worker is gone, but its last frames may still be
in the mailbox, in an inference batch or in the rules queue. Each frame offered to the mailbox is
analysed, or counted as dropped (replaced there) or stale; once those add up to what was offered,
the rules stage ends the camera's episodes at its last frame and closes its incidents, as
``safewatch audit`` does at the end of a file.
"""

from __future__ import annotations

import logging
import threading
import time

from safewatch.runtime.evaluation import RulesWorker
from safewatch.runtime.inference import InferenceWorker
from safewatch.runtime.mailbox import FrameMailbox

__all__ = ["finish_when_judged"]

log = logging.getLogger(__name__)


def finish_when_judged(
    camera_id: str,
    mailbox: FrameMailbox,
    rules: RulesWorker,
    inference: InferenceWorker,
    stopped: threading.Event,
    quiet_seconds: float = 30.0,
) -> None:
    """Wait until every frame ``camera_id`` offered is accounted for, then finish the camera.

    Gives up waiting (and finishes anyway, with a warning) when the count has not moved for
    ``quiet_seconds``, or once ``stopped`` is set (the server's stop).
    """
    last, changed = -1, time.monotonic()
    while not stopped.is_set():
        delivered = mailbox.offered().get(camera_id, 0)
        evaluated = rules.counters().get(camera_id)
        counted = inference.counters().get(camera_id)
        judged = (
            (evaluated.analysed if evaluated is not None else 0)
            + mailbox.dropped().get(camera_id, 0)
            + (counted.stale + counted.torn if counted is not None else 0)
        )
        if judged >= delivered and not mailbox.holds(camera_id):
            break
        if judged != last:
            last, changed = judged, time.monotonic()
        elif time.monotonic() - changed > quiet_seconds:
            log.warning(
                "camera %s: %d of %d frames accounted for after its end; finishing anyway",
                camera_id,
                judged,
                delivered,
            )
            break
        time.sleep(0.1)
    rules.finish_camera(camera_id)
