"""A thin adapter over roboflow ``trackers.ByteTrackTracker`` for one object label.

Kept apart from the camera logic so the library's conventions stay in one place:

* Time mode. The library is fed the frame clock (``timestamp=`` seconds), so its lost-track budget
  is measured in seconds and its Kalman step scales with the real gap between sampled frames. Its
  ``lost_track_buffer`` is expressed in 30 fps frames (``budget_seconds = buffer / 30``), hence the
  conversion below. ``frame_rate`` only sets the nominal step of the motion model.
* Activation. The library spawns tracks only from unmatched *high*-confidence detections that also
  clear ``track_activation_threshold``, so the effective start threshold is
  ``max(activation_confidence, high_confidence)``. A new track gets its id on its second
  consecutive match at the earliest, so ``min_frames=1`` behaves like ``2``.
* Frame size. The library's Kalman states are in pixels. A camera that changes resolution while
  streaming (a firmware or profile switch from 1920x1080 to 1280x720) would otherwise give every
  living track a predicted box that no longer overlaps its own person, and each person a new id
  (a new subject for every rule, a dwell clock restarted). Boxes are therefore tracked in the
  pixels of the first frame the instance saw; later frames of another size are scaled into them.
  Only the association sees the scaled boxes: results are row indices into the caller's boxes.
* Input. ``update`` does not mutate the ``sv.Detections`` it is given (it returns an indexed copy);
  we still build that object from copies of our read-only arrays, and carry each row's original
  index in ``data`` to map results back.
"""

from __future__ import annotations

import numpy as np
import supervision as sv
from numpy.typing import NDArray
from trackers import ByteTrackTracker

from safewatch.config.site import TrackerConfig

__all__ = ["LabelTracker"]

_LIBRARY_FPS = 30.0  # the library's lost_track_buffer unit: frames at 30 fps
_INDEX = "safewatch_index"


class LabelTracker:
    """ByteTrack over the detections of one label of one camera.

    Args:
        config: The site's tracker settings.
        frame_rate: Nominal analysis frames per second of the camera (Kalman step unit).
    """

    def __init__(self, config: TrackerConfig, frame_rate: float) -> None:
        self._size: tuple[int, int] | None = None  # (width, height) the tracker's pixels are in
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(config.lost_track_seconds * _LIBRARY_FPS)),
            frame_rate=frame_rate,
            track_activation_threshold=config.activation_confidence,
            minimum_consecutive_frames=config.min_frames,
            minimum_iou_threshold=config.min_iou,
            high_conf_det_threshold=config.high_confidence,
        )

    def update(
        self,
        xyxy: NDArray[np.float32],
        confidence: NDArray[np.float32],
        clock: float,
        size: tuple[int, int] | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
        """Advance to ``clock`` seconds with this frame's boxes of the label.

        Args:
            xyxy: ``(N, 4)`` boxes (not modified).
            confidence: ``(N,)`` scores (not modified).
            clock: Strictly increasing seconds on the camera's frame clock.
            size: ``(width, height)`` of the frame the boxes are in; a size other than the first
                one seen scales the boxes into the first one's pixels (module docstring).

        Returns:
            Row indices into ``xyxy`` of the detections that belong to a confirmed track, and the
            library's track id for each (ids are per instance and start at 0).
        """
        n = int(xyxy.shape[0])
        boxes = np.array(xyxy, dtype=np.float32, copy=True).reshape(n, 4)
        if size is not None:
            if self._size is None:
                self._size = size
            elif size != self._size:
                sx = self._size[0] / size[0]
                sy = self._size[1] / size[1]
                boxes *= np.array([sx, sy, sx, sy], np.float32)
        detections = sv.Detections(
            xyxy=boxes,
            confidence=np.array(confidence, dtype=np.float32, copy=True),
            data={_INDEX: np.arange(n, dtype=np.intp)},
        )
        out = self._tracker.update(detections, timestamp=clock)
        if len(out) == 0 or out.tracker_id is None:
            return np.zeros(0, np.intp), np.zeros(0, np.int64)
        ids = np.asarray(out.tracker_id, dtype=np.int64)
        confirmed = ids >= 0
        rows = np.asarray(out.data[_INDEX], dtype=np.intp)[confirmed]
        return rows, ids[confirmed]

    def alive_ids(self) -> set[int]:
        """Library ids of confirmed tracks still alive (matched now or within the lost budget)."""
        return {int(t.tracker_id) for t in self._tracker.tracks if t.tracker_id >= 0}

    @property
    def idle(self) -> bool:
        """True when no track, confirmed or tentative, is alive: the instance can be dropped."""
        return not self._tracker.tracks
