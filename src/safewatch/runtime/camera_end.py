"""The end of a file camera: its episodes finish once its last frame is judged.

When a file camera plays to its end its decode worker is gone, but its last frames may still be
in the mailbox, in an inference batch or in the rules queue. Each frame offered to the mailbox is
analysed, or counted as dropped (replaced there) or stale; once those add up to what was offered,
the rules stage ends the camera's episodes at its last frame and closes its incidents, as
``safewatch audit`` does at the end of a file.

Only the frames of the worker incarnation that ended are counted (:class:`~.mailbox.RunCounter`):
the stages' totals span the camera's earlier runs, and the rules stage starts its own again when
a run is finished, so after a restart of the camera a total would never add up (a 30 s wait and
a warning of "97 of 150 frames accounted for"). The wait is for that incarnation alone: the
camera stopped or restarted meanwhile (``cancelled``) ends it without finishing, since its stop
finished the run, and the finish names the incarnation, so a late one never ends a newer run.
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
    incarnation: int,
    mailbox: FrameMailbox,
    rules: RulesWorker,
    inference: InferenceWorker,
    stopped: threading.Event,
    cancelled: threading.Event,
    quiet_seconds: float = 30.0,
) -> None:
    """Wait until every frame ``incarnation`` of ``camera_id`` offered is accounted for, then
    finish the camera's run.

    Gives up waiting (and finishes anyway, with a warning) when the count has not moved for
    ``quiet_seconds``, or once ``stopped`` is set (the server's stop). Returns without
    finishing once ``cancelled`` is set (the camera was stopped: that finished its run).
    """
    last, changed = -1, time.monotonic()
    while not stopped.is_set():
        if cancelled.is_set():
            return
        delivered = mailbox.run_offered.count(camera_id, incarnation)
        judged = (
            rules.run_handled.count(camera_id, incarnation)
            + mailbox.run_dropped.count(camera_id, incarnation)
            + inference.run_lost.count(camera_id, incarnation)
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
        cancelled.wait(0.1)
    rules.finish_camera(camera_id, incarnation=incarnation)
