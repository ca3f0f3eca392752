"""The loop a user would otherwise write, for ``python -m bench.runtime baseline``.

One process, one thread: for each camera in turn, decode (PyAV) until the next frame due at the
analysis rate, letterbox it as the YOLOX demo does, ``session.run`` one frame, decode the raw
head, NMS (OpenCV), ByteTrack (roboflow ``trackers``, the library safewatch also uses). Same
streams, same model, same input size and thresholds as the safewatch run beside it.

Equal accuracy is checked, not assumed: both detectors are scored against the PETS09 ground truth
(person boxes of frames 1-100, IoU >= 0.5), and their boxes on the same frames of the construction
clip are matched against each other. They differ only in the letterbox arithmetic (the YOLOX demo
truncates the resized size, safewatch rounds it, as Ultralytics does), which moves a tiny model's
scores a little either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import onnxruntime as ort
import supervision as sv
from numpy.typing import NDArray
from trackers import ByteTrackTracker

from bench._common import require_asset
from bench.runtime import CLIP, MODEL, header, rtsp_cameras, run_with

SIZE = 416
CONFIDENCE = 0.25
NMS_IOU = 0.45


class BaselineDetector:
    """YOLOX-Nano the way its demo code runs it: one frame per ``session.run``."""

    def __init__(self, path: Path) -> None:
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        grids, strides = [], []
        for stride in (8, 16, 32):
            h, w = SIZE // stride, SIZE // stride
            xv, yv = np.meshgrid(np.arange(w), np.arange(h))
            grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
            strides.append(np.full((h * w, 1), stride))
        self.grid = np.concatenate(grids).astype(np.float32)
        self.stride = np.concatenate(strides).astype(np.float32)

    def __call__(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Person boxes (xyxy, source pixels) and scores."""
        h, w = image.shape[:2]
        ratio = min(SIZE / h, SIZE / w)
        resized = cv2.resize(
            image, (int(w * ratio), int(h * ratio)), interpolation=cv2.INTER_LINEAR
        )
        padded = np.full((SIZE, SIZE, 3), 114, np.uint8)
        padded[: resized.shape[0], : resized.shape[1]] = resized
        blob = padded.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.session.run(None, {self.name: blob})[0][0]
        xy = (out[:, :2] + self.grid) * self.stride
        wh = np.exp(out[:, 2:4]) * self.stride
        scores = out[:, 4] * out[:, 5]  # objectness x person
        keep = scores > CONFIDENCE
        xy, wh, scores = xy[keep], wh[keep], scores[keep]
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1) / ratio
        if not len(boxes):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), CONFIDENCE, NMS_IOU)
        index = np.asarray(kept, int).reshape(-1)
        return boxes[index].astype(np.float32), scores[index].astype(np.float32)


def _frames(url: str, fps: float) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    """Decode every frame, yield those due at ``fps`` (by PTS), as BGR."""
    container = av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"})
    stream = container.streams.video[0]
    next_due = None
    try:
        for frame in container.decode(stream):
            t = frame.time or 0.0
            if next_due is None or t >= next_due:
                next_due = t + 1.0 / fps if next_due is None else next_due + 1.0 / fps
                yield t, frame.to_ndarray(format="bgr24")
    finally:
        container.close()


def baseline_loop(
    urls: list[str], fps: float, seconds: float, warmup: float = 5.0
) -> dict[str, Any]:
    """Run the single-process loop; analysed frames/s and how far behind live it fell."""
    detector = BaselineDetector(require_asset(MODEL))
    streams = [_frames(url, fps) for url in urls]
    trackers = [ByteTrackTracker(frame_rate=fps) for _ in urls]
    started = time.monotonic()
    counted = 0
    first_t: list[float | None] = [None] * len(urls)
    lag = 0.0
    measuring_from: float | None = None
    while (now := time.monotonic()) - started < warmup + seconds:
        if measuring_from is None and now - started >= warmup:
            measuring_from, counted = now, 0
        for index, stream in enumerate(streams):
            t, image = next(stream)
            if first_t[index] is None:
                first_t[index] = t
            boxes, scores = detector(image)
            trackers[index].update(sv.Detections(xyxy=boxes, confidence=scores))
            counted += 1
            # Media seconds played vs wall seconds since start: the backlog this loop built.
            lag = (time.monotonic() - started) - (t - (first_t[index] or 0.0))
    elapsed = time.monotonic() - (measuring_from or started)
    for stream in streams:
        stream.close()
    return {"analysed_fps": round(counted / elapsed, 2), "lag_seconds_at_end": round(lag, 2)}


def _iou(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9), np.float32)


def agreement(frames: int = 120) -> dict[str, Any]:
    """Person boxes of the baseline and of safewatch's detector on the same frames."""
    from safewatch.config.site import ModelConfig
    from safewatch.detect import OnnxDetector
    from safewatch.domain import Frame

    baseline = BaselineDetector(require_asset(MODEL))
    ours = OnnxDetector(
        ModelConfig(path="x", format="yolox", labels={"person": "person"}, confidence=CONFIDENCE),
        require_asset(MODEL),
        "coco",
    )
    matched = only_ours = only_baseline = 0
    with av.open(str(require_asset(CLIP))) as container:
        for index, picture in enumerate(container.decode(video=0)):
            if index % 4:
                continue
            image = picture.to_ndarray(format="bgr24")
            a, _ = baseline(image)
            (found,) = ours.detect([Frame("clip", index, 0.0, 0.0, image)])
            b = found.xyxy
            if len(a) and len(b):
                iou = _iou(a, b)
                pairs = 0
                while iou.size and iou.max() >= 0.5:
                    i, j = np.unravel_index(int(iou.argmax()), iou.shape)
                    iou[i, :] = 0
                    iou[:, j] = 0
                    pairs += 1
            else:
                pairs = 0
            matched += pairs
            only_baseline += len(a) - pairs
            only_ours += len(b) - pairs
            if index // 4 + 1 >= frames:
                break
    f1 = 2 * matched / max(1, 2 * matched + only_ours + only_baseline)
    return {
        "frames": frames,
        "matched_boxes": matched,
        "only_baseline": only_baseline,
        "only_safewatch": only_ours,
        "f1": round(f1, 4),
    }


def _match(found: NDArray[np.float32], truth: NDArray[np.float32]) -> int:
    """Greedy one-to-one matches at IoU >= 0.5."""
    if not len(found) or not len(truth):
        return 0
    iou = _iou(found, truth)
    pairs = 0
    while iou.size and iou.max() >= 0.5:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        iou[i, :] = 0
        iou[:, j] = 0
        pairs += 1
    return pairs


def accuracy_vs_ground_truth() -> dict[str, Any]:
    """Person detection of both detectors against PETS09 ground truth (MOT frames 1-100)."""
    from safewatch.config.site import ModelConfig
    from safewatch.detect import OnnxDetector
    from safewatch.domain import Frame

    truth: dict[int, list[list[float]]] = {}
    gt = require_asset("video/pets09_s2l1_gt/gt_480x360_frames1-100.txt")
    for line in gt.read_text().splitlines():
        frame, _, x, y, w, h = (float(v) for v in line.split(",")[:6])
        truth.setdefault(int(frame) - 1, []).append([x, y, x + w, y + h])
    baseline = BaselineDetector(require_asset(MODEL))
    ours = OnnxDetector(
        ModelConfig(path="x", format="yolox", labels={"person": "person"}, confidence=CONFIDENCE),
        require_asset(MODEL),
        "coco",
    )
    counts = {"baseline": [0, 0], "safewatch": [0, 0]}  # matched, found
    total = 0
    with av.open(str(require_asset("video/pets09_s2l1_480x360.avi"))) as container:
        for index, picture in enumerate(container.decode(video=0)):
            if index >= 100:
                break
            image = picture.to_ndarray(format="bgr24")
            expected = np.asarray(truth.get(index, []), np.float32).reshape(-1, 4)
            total += len(expected)
            a, _ = baseline(image)
            (b,) = ours.detect([Frame("pets", index, 0.0, 0.0, image)])
            for name, boxes in (("baseline", a), ("safewatch", b.xyxy)):
                counts[name][0] += _match(boxes, expected)
                counts[name][1] += len(boxes)
    result: dict[str, Any] = {"frames": 100, "ground_truth_boxes": total}
    for name, (matched, found) in counts.items():
        precision = matched / max(1, found)
        recall = matched / max(1, total)
        result[name] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(2 * precision * recall / max(1e-9, precision + recall), 4),
        }
    return result


def section_baseline(seconds: float) -> dict[str, Any]:
    """Throughput of safewatch vs the hand-written loop, same cameras and model."""
    result: dict[str, Any] = {
        "accuracy_pets09": accuracy_vs_ground_truth(),
        "agreement_on_construction_clip": agreement(),
        "rows": [],
        **header(),
    }
    print("accuracy against PETS09 ground truth:", result["accuracy_pets09"], flush=True)
    print("box agreement on the clip:", result["agreement_on_construction_clip"], flush=True)
    for count in (4, 8):
        with rtsp_cameras(count) as cameras:
            urls = [c.url for c in cameras]
            loop = baseline_loop(urls, 5.0, seconds)
        with rtsp_cameras(count) as cameras:
            ours = run_with([c.url for c in cameras], seconds).summary()
        row = {
            "cameras": count,
            "demanded_fps": count * 5.0,
            "baseline_analysed_fps": loop["analysed_fps"],
            "baseline_lag_seconds_at_end": loop["lag_seconds_at_end"],
            "safewatch_analysed_fps": ours["analysed_fps"],
            "safewatch_age_at_evaluated_ms_p95": ours["age_at_evaluated_ms_p95"],
            "safewatch_cpu_cores": ours["cpu_cores"],
            "ratio": round(ours["analysed_fps"] / loop["analysed_fps"], 3),
        }
        result["rows"].append(row)
        print(row, flush=True)
    return result
