"""Keep the first frames of a video: the recorded trim step of downloaded demo footage.

The demo clip's public upstream (a test video of yihong1120/Construction-Hazard-Detection) runs
on past the CCTV shot into unrelated footage. The catalogue records how many frames to keep; this
step decodes them and re-encodes them with their own timestamps (H.264, no audio), the way the
project's shared copy of the clip was made. A stream copy would keep the upstream bytes but
cannot cut a stream with B-frames cleanly at an arbitrary frame, so the clip is re-encoded; its
checksum is recorded when it enters the cache.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np

from safewatch.errors import SourceError
from safewatch.ingest.video_writer import Mp4Writer

__all__ = ["trim_video"]


def trim_video(source: Path, target: Path, *, frames: int, crf: int = 18) -> int:
    """Write the first ``frames`` frames of ``source`` to ``target`` (MP4, H.264, video only).

    Returns:
        The number of frames written (fewer when the video is shorter).

    Raises:
        SourceError: The file cannot be decoded or has no video stream.
    """
    if frames < 1:
        raise SourceError(f"trim of {source}: frames must be at least 1, not {frames}")
    written = 0
    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise SourceError(f"trim of {source}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 25)
            decoded = container.decode(stream)
            first = next(decoded, None)
            if first is None:
                raise SourceError(f"trim of {source}: no frames could be decoded")
            height, width = first.height, first.width
            with Mp4Writer(target, rate, width, height, crf=crf) as writer:
                for frame in itertools.chain([first], itertools.islice(decoded, frames - 1)):
                    image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                    writer.write(image, float(frame.time) if frame.time is not None else 0.0)
                    written += 1
    except av.FFmpegError as exc:
        raise SourceError(f"trim of {source}: cannot decode it ({exc})") from exc
    return written
