"""Train the head detector on ``photos.npz`` and export it to ONNX (step 2 of 2).

Why a head detector: on the photos the project can train on, most bare heads safewatch misses are
heads no person box reaches (the person detector never finds the person, or scores them below the
track start), not heads it misreads (docs/ppe.md). A head is small but rarely hidden, even in a
crowd where the body is, and the hat / bare-head question is asked of the head anyway.

Measured and not shipped (docs/ppe.md, "A head detector"; DATA.md): on the held-out photos it
raises the example site's bare-head recall by 2-11 points but takes precision below 0.95, and on
PETS09's distant walkers it calls more bare heads hard hats. Kept so a site can train one on its
own labelled camera photos and measure it (``bench.ppe_compliance`` / ``bench.ppe_clips``
``--head-detector``).

Runs in the head classifier's training environment (``training/head_classifier/requirements.txt``:
PyTorch on the CPU and ``onnx2torch``), never at run time: the product loads the exported ONNX with
ONNX Runtime, as any other ``yolov8``-format detector.

Model: the backbone of the example site's person detector, YOLOX-Nano (COCO, Apache-2.0; its three
stages, ~0.46 M weights), fine-tuned, a small neck that adds its three stages at stride 8, and a
centre-point head (CenterNet-style: per 8x8 cell, one score per class for "a head's centre is
here", the offset of that centre inside the cell and the head's log width and height). A head is
found where its class score is a local maximum, so no anchor sizes are tuned to this data set.
The export decodes that in the graph into the ``[B, 4+2, cells]`` layout of YOLOv8 exports
(``cx, cy, w, h`` in input pixels, then ``hardhat`` and ``bare`` scores, zero off the local
maxima), with the class names in the metadata, so safewatch runs it with its ``yolov8`` adapter
(RGB 0-1, centred letterbox) and its own NMS; the model converts to the backbone's BGR 0-255.

Training augments for fixed CCTV views: random scale (down to heads of a few pixels) and position
on the grey letterbox canvas, left-right flips, brightness / contrast / colour changes, lowered
resolution and some grey photos. The held-out quarter of the photos (the same draw as the head
classifier's and ``bench.ppe_compliance --data heldout``, written by ``extract.py``) is never
trained on; the script prints recall and precision of head boxes there every five epochs.

Run from the repository root:
``/path/to/train-venv/bin/python -m training.head_detector.train photos.npz out.onnx``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional

from training.head_classifier.train import BACKBONE_CHANNELS, backbone_onnx

STRIDE = 8
"""Output cell side in input pixels: heads of 8-15 px (CCTV walkers) still get a cell each."""
SIZE = 416
"""Training and export input side, the YOLOX-Nano person model's own."""
CLASSES = ("hardhat", "bare")
GREY = 114
"""The yolov8 adapter's letterbox fill."""


@dataclass
class Photos:
    """The packed photos of ``extract.py``."""

    images: list[NDArray[np.uint8]]
    boxes: list[NDArray[np.float32]]
    classes: list[NDArray[np.int64]]
    heldout: NDArray[np.intp]
    """Photo numbers never trained on (the head classifier's held-out quarter)."""

    @classmethod
    def load(cls, path: Path) -> Photos:
        """Unpack ``photos.npz``."""
        data = np.load(path)
        pixels, shapes = data["pixels"], data["shapes"]
        images: list[NDArray[np.uint8]] = []
        start = 0
        for shape in shapes:
            end = start + int(np.prod(shape))
            images.append(pixels[start:end].reshape(tuple(int(v) for v in shape)))
            start = end
        owner = data["owner"]
        return cls(
            images,
            [data["boxes"][owner == i] for i in range(len(images))],
            [data["classes"][owner == i] for i in range(len(images))],
            np.asarray(data["heldout"], np.intp),
        )


def letterbox(image: NDArray[np.uint8], scale: float, dx: int, dy: int) -> NDArray[np.uint8]:
    """``image`` scaled by ``scale`` with its top-left corner at ``(dx, dy)`` on a grey canvas."""
    h, w = image.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else 1)
    canvas = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    x1, y1 = max(dx, 0), max(dy, 0)
    x2, y2 = min(dx + nw, SIZE), min(dy + nh, SIZE)
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = resized[y1 - dy : y2 - dy, x1 - dx : x2 - dx]
    return canvas


def augment(
    image: NDArray[np.uint8],
    boxes: NDArray[np.float32],
    classes: NDArray[np.int64],
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint8], NDArray[np.float32], NDArray[np.int64]]:
    """One randomly placed, scaled and coloured copy of a photo on the 416x416 canvas."""
    h, w = image.shape[:2]
    fit = SIZE / max(h, w)
    # A third of the copies shrink the photo to a quarter-half of the canvas: CCTV heads are small.
    zoom = rng.uniform(0.25, 0.6) if rng.random() < 0.35 else rng.uniform(0.6, 1.5)
    scale = fit * zoom
    nw, nh = w * scale, h * scale
    dx = int(rng.uniform(min(0, SIZE - nw), max(0, SIZE - nw) + 1))
    dy = int(rng.uniform(min(0, SIZE - nh), max(0, SIZE - nh) + 1))
    out = letterbox(image, scale, dx, dy)
    moved = boxes * scale + np.array([dx, dy, dx, dy], np.float32)
    if rng.random() < 0.5:
        out = np.ascontiguousarray(out[:, ::-1])
        moved = np.stack([SIZE - moved[:, 2], moved[:, 1], SIZE - moved[:, 0], moved[:, 3]], 1)
    clipped = moved.clip(0, SIZE)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    seen = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (seen >= 0.5 * np.maximum(area, 1e-6)) & (clipped[:, 2] - clipped[:, 0] >= 2)
    if rng.random() < 0.3:  # lowered resolution, as a small head upscaled by the letterbox
        factor = rng.uniform(1.5, 3.0)
        small = cv2.resize(out, (int(SIZE / factor), int(SIZE / factor)), interpolation=3)
        out = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    pixels = out.astype(np.float32)
    pixels = pixels * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)
    pixels *= rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    if rng.random() < 0.1:
        pixels[:] = pixels.mean(axis=2, keepdims=True)
    return pixels.clip(0, 255).astype(np.uint8), clipped[keep], classes[keep]


def targets(
    boxes: NDArray[np.float32], classes: NDArray[np.int64]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Heat maps ``[2, H, W]``, regression targets ``[4, H, W]`` and their mask ``[H, W]``.

    Each head puts a Gaussian around its centre cell in its class's map (width from the head's
    size, so a big head's neighbouring cells are not punished as hard as a small head's); the
    centre cell carries the sub-cell offset and log size.
    """
    cells = SIZE // STRIDE
    heat = np.zeros((2, cells, cells), np.float32)
    reg = np.zeros((4, cells, cells), np.float32)
    mask = np.zeros((cells, cells), np.float32)
    ys, xs = np.mgrid[0:cells, 0:cells].astype(np.float32)
    for (x1, y1, x2, y2), cls in zip(boxes, classes, strict=True):
        cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
        bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        ix, iy = min(int(cx), cells - 1), min(int(cy), cells - 1)
        sigma = max(0.5, 0.15 * math.sqrt(bw * bh) / STRIDE)
        blob = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
        heat[cls] = np.maximum(heat[cls], blob)
        heat[cls, iy, ix] = 1.0
        reg[:, iy, ix] = (cx - ix, cy - iy, math.log(bw / STRIDE), math.log(bh / STRIDE))
        mask[iy, ix] = 1.0
    return heat, reg, mask


def conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    """Conv-BN-SiLU, as in the backbone."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU()
    )


class HeadNet(nn.Module):
    """Backbone, a stride-8 neck and the centre-point head; input RGB 0-1 (the yolov8 layout)."""

    def __init__(self, backbone: nn.Module, width: int = 64):
        super().__init__()
        self.backbone = backbone
        self.lateral = nn.ModuleList(conv(c, width, 1) for c in BACKBONE_CHANNELS)
        self.fuse = nn.Sequential(conv(width, width), conv(width, width))
        self.heat = nn.Conv2d(width, len(CLASSES), 1)
        self.reg = nn.Conv2d(width, 4, 1)
        nn.init.constant_(self.heat.bias, -4.6)  # a prior of 1 %: most cells hold no head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heat-map logits ``[B, 2, H/8, W/8]`` and regressions ``[B, 4, H/8, W/8]``."""
        stages = self.backbone(x.flip(1) * 255.0)
        size = stages[0].shape[2:]
        merged = sum(
            functional.interpolate(lat(s), size=size, mode="nearest") if i else lat(s)
            for i, (lat, s) in enumerate(zip(self.lateral, stages, strict=True))
        )
        features = self.fuse(merged)
        return self.heat(features), self.reg(features)


class Exported(nn.Module):
    """The net with its outputs decoded into the YOLOv8 export layout (see the module doc)."""

    def __init__(self, net: HeadNet):
        super().__init__()
        self.net = net
        cells = SIZE // STRIDE
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys]).float().reshape(1, 2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 6, cells]``: ``cx, cy, w, h`` in pixels, then the two class scores."""
        logits, reg = self.net(x)
        scores = torch.sigmoid(logits)
        peaks = functional.max_pool2d(scores, 3, stride=1, padding=1)
        scores = scores * (peaks == scores).float()
        b = x.shape[0]
        reg = reg.reshape(b, 4, -1)
        centre = (self.grid + reg[:, :2]) * STRIDE
        size = torch.exp(reg[:, 2:].clamp(max=6.0)) * STRIDE
        return torch.cat([centre, size, scores.reshape(b, 2, -1)], dim=1)


def focal(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed (divide by the number of heads)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - heat) ** 4 * (1 - pos)
    return pos_loss.sum() + neg_loss.sum()


def pretrained(detector: Path) -> HeadNet:
    """A fresh head over ``detector``'s backbone (needs ``onnx2torch``)."""
    import onnx2torch

    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "backbone.onnx"
        backbone_onnx(detector, cut)
        return HeadNet(onnx2torch.convert(str(cut)))


def batches(
    photos: Photos, order: NDArray[np.intp], size: int, rng: np.random.Generator
) -> list[tuple[torch.Tensor, ...]]:
    """One epoch of augmented batches over the photos numbered ``order``."""
    out: list[tuple[torch.Tensor, ...]] = []
    shuffled = rng.permutation(order)
    for start in range(0, len(shuffled), size):
        images, heats, regs, masks = [], [], [], []
        for i in shuffled[start : start + size]:
            image, boxes, classes = augment(
                photos.images[i], photos.boxes[i], photos.classes[i], rng
            )
            heat, reg, mask = targets(boxes, classes)
            images.append(image[:, :, ::-1].transpose(2, 0, 1) / np.float32(255))
            heats.append(heat)
            regs.append(reg)
            masks.append(mask)
        arrays = (images, heats, regs, masks)
        out.append(tuple(torch.from_numpy(np.stack(a)).float() for a in arrays))
    return out


Runner = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"""A ``[1, 3, SIZE, SIZE]`` RGB 0-1 canvas to the decoded ``[6, cells]`` output."""


def torch_runner(exported: Exported) -> Runner:
    """Run the net being trained (in eval mode, without gradients)."""

    def run(canvas: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.no_grad():
            return np.asarray(exported(torch.from_numpy(canvas))[0].numpy(), np.float32)

    return run


def onnx_runner(path: Path) -> Runner:
    """Run an exported file with ONNX Runtime, as safewatch does (``--score``)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(canvas: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(session.run(None, {name: canvas})[0][0], np.float32)

    return run


def match_one_to_one(
    truth: NDArray[np.float32], det: NDArray[np.float32], score: NDArray[np.float32]
) -> tuple[NDArray[np.bool_], int]:
    """Which labelled heads a detection finds (IoU >= 0.5), and how many detections find one.

    Greedy, best score first, each head found at most once: a second peak on a found head is a
    false detection, as in box AP."""
    found = np.zeros(len(truth), np.bool_)
    iou = pairwise_iou(truth, det)
    correct = 0
    for j in np.argsort(-score, kind="stable"):
        if not len(truth):
            break
        candidates = np.where(found, -1.0, iou[:, j])
        best = int(np.argmax(candidates))
        if candidates[best] >= 0.5:
            found[best] = True
            correct += 1
    return found, correct


def evaluate(run: Runner, photos: Photos, order: NDArray[np.intp]) -> str:
    """Recall / precision of head boxes (IoU >= 0.5, either class, one-to-one) and the share of
    bare heads found, on the photos numbered ``order``.

    Photos are letterboxed whole, centred, as at run time.
    """
    lines = []
    found: dict[float, list[int]] = {t: [0, 0, 0, 0, 0] for t in (0.2, 0.3, 0.5)}
    bare_total = 0
    for i in order:
        image = photos.images[i]
        h, w = image.shape[:2]
        scale = SIZE / max(h, w)
        dx, dy = int((SIZE - w * scale) / 2), int((SIZE - h * scale) / 2)
        canvas = letterbox(image, scale, dx, dy)
        out = run(
            np.ascontiguousarray(canvas[None, :, :, ::-1].transpose(0, 3, 1, 2)) / np.float32(255)
        )
        truth = photos.boxes[i] * scale + np.array([dx, dy, dx, dy], np.float32)
        bare = photos.classes[i] == 1
        score = out[4:].max(axis=0)
        for threshold, tally in found.items():
            keep = score >= threshold
            cx, cy, bw, bh = out[:4, keep]
            det = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
            hit, correct = match_one_to_one(truth, det, score[keep])
            tally[0] += int(hit.sum())
            tally[1] += len(truth)
            tally[2] += correct
            tally[3] += len(det)
            tally[4] += int((hit & bare).sum())
        bare_total += int(bare.sum())
    for threshold, (hits, total, correct, dets, bare_hits) in found.items():
        lines.append(
            f"score>={threshold}: head recall {hits / max(total, 1):.3f} precision "
            f"{correct / max(dets, 1):.3f} bare recall {bare_hits / max(bare_total, 1):.3f}"
        )
    return "; ".join(lines)


def pairwise_iou(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """IoU of every box of ``a`` with every box of ``b``."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9), np.float32)


def export(net: HeadNet, out: Path) -> None:
    """Write the decoded net as ONNX with the class names and input size in its metadata."""
    exported = Exported(net).eval()
    torch.onnx.export(
        exported,
        (torch.zeros(1, 3, SIZE, SIZE),),
        str(out),
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(out))
    for key, value in {
        "names": repr(dict(enumerate(CLASSES))),
        "imgsz": repr([SIZE, SIZE]),
        "description": "safewatch head detector (training/head_detector)",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))


def main() -> None:
    """Train, report on the held-out quarter, export."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", type=Path, help="photos.npz from extract.py")
    parser.add_argument("out", type=Path, help="the ONNX file to write")
    parser.add_argument(
        "--backbone",
        type=Path,
        default=Path(__file__).resolve().parents[3] / "shared/assets/models/yolox_nano_coco.onnx",
        help="the YOLOX-Nano COCO ONNX whose backbone is fine-tuned",
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--all", action="store_true", help="train on the held-out quarter too")
    parser.add_argument(
        "--score",
        action="store_true",
        help="only score the existing ONNX file `out` on the held-out photos (needs onnxruntime)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    photos = Photos.load(args.photos)
    held = photos.heldout
    if args.score:
        print(f"{args.out} held out: " + evaluate(onnx_runner(args.out), photos, held))
        return
    train = np.setdiff1d(np.arange(len(photos.images)), [] if args.all else held)
    net = pretrained(args.backbone)
    head_params = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    optimiser = torch.optim.AdamW(
        [
            {"params": list(net.backbone.parameters()), "lr": 1e-3},
            {"params": head_params, "lr": 3e-3},
        ],
        weight_decay=1e-4,
    )
    steps = args.epochs * math.ceil(len(train) / args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[1e-3, 3e-3], total_steps=steps, pct_start=0.1
    )
    exported = Exported(net)
    for epoch in range(args.epochs):
        started = time.monotonic()
        total = 0.0
        for images, heat, reg, mask in batches(photos, train, args.batch, rng):
            logits, pred = net(images)
            heads = max(float(mask.sum()), 1.0)
            loss = focal(logits, heat) / heads
            box_loss = functional.l1_loss(pred, reg, reduction="none") * mask[:, None]
            loss = loss + box_loss.sum() / heads
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss)
        line = f"epoch {epoch + 1}: loss {total:.1f} ({time.monotonic() - started:.0f} s)"
        if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
            exported.eval()
            line += " | held out: " + evaluate(torch_runner(exported), photos, held)
            exported.train()
        print(line, flush=True)
    export(net, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
