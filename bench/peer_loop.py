"""The Ultralytics loop most users write, run by ``bench/peer.py`` in the peer's own venv.

This file imports only Ultralytics and the standard library: it runs under the separate virtual
environment's interpreter (Ultralytics is AGPL and pulls in torch; it is never a safewatch
dependency). It prints one JSON object on its last line of stdout.

Modes:
    speed MODEL CLIP: ``YOLO(MODEL).track(source=CLIP, tracker="bytetrack.yaml", imgsz=640,
        classes=[0])`` over every frame; frames, loop wall and CPU seconds.
    tracks MODEL CLIP N: the same over the first N frames; per frame, the track ids and
        ``xyxy`` boxes (for MOTA/IDF1 against the ground truth, scored on safewatch's side).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks or downloads: there is no network


def main(argv: list[str]) -> None:
    """Run one mode and print its JSON."""
    from ultralytics import YOLO  # type: ignore[import-not-found,unused-ignore]

    mode, model_path, clip = argv[0], argv[1], argv[2]
    limit = int(argv[3]) if mode == "tracks" else None
    model = YOLO(model_path, task="detect")
    stream = model.track(
        source=clip,
        tracker="bytetrack.yaml",
        imgsz=640,
        classes=[0],
        stream=True,
        verbose=False,
    )
    frames = 0
    tracks: list[list[list[float]]] = []
    shape: list[int] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for result in stream:
        frames += 1
        if limit is not None:
            boxes = result.boxes
            rows: list[list[float]] = []
            if boxes is not None and boxes.id is not None:
                for track_id, xyxy in zip(boxes.id.tolist(), boxes.xyxy.tolist(), strict=True):
                    rows.append([float(track_id), *map(float, xyxy)])
            tracks.append(rows)
            if frames >= limit:
                break
        if not shape and result.orig_shape is not None:
            shape = list(result.orig_shape)
    out = {
        "frames": frames,
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "orig_shape": shape,
    }
    if limit is not None:
        out["tracks"] = tracks
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
