"""Train the head classifier on ``crops.npz`` and export it to ONNX (step 2 of 2).

Runs in the small training environment (``training/head_classifier/requirements.txt``: PyTorch on
the CPU, 10-25 minutes on two shared cores at 48x48, about 25 with ``--backbone`` at 128x128),
never at run time: the product only loads the exported ONNX with ONNX Runtime.

Model (v2, the shipped ``head_classifier``): four conv blocks (16-24-32-48 channels, ~30 k
weights, ~0.1 MB) trained from scratch over the square BGR crop (48x48 from ``extract.py``; 32x32
until v2), global average pooling, three outputs ``hardhat`` / ``bare`` / ``not_visible``.

``--backbone`` (v3, measured and not shipped; DATA.md): the backbone of the YOLOX-Nano COCO
detector (Apache-2.0, the example site's person model; its three stages, ~0.46 M weights, ~1.9 MB)
fine-tuned on 128x128 crops (``extract.py --size 128``), average- and max-pooled per stage, one
linear layer to the same outputs. COCO features make a better crop classifier (held-out quarter,
bare heads called at 95 % precision: 0.86 of crops against v2's 0.77, 0.78 of person-box crops
against 0.67), but not a better product: the whole pipeline on the held-out photos gains two of
121 bare heads, on PETS09's 8-15 px heads it calls more bare heads hard hats than v2, and it
costs ~1.5 ms of CPU per head against ~0.27 ms. Worth trying when a site retrains on its own,
larger set of photos (docs/ppe.md, "Retraining").
A first try with a perceptron over raw pixels (scikit-learn) reached 0.65 held-out accuracy on
crops cut from person boxes; hats are a shape (a dome with a brim) at an unknown position in the
crop, which convolutions handle and a perceptron over pixels does not. Training augments with
left-right flips, zoom and shifts, lowered resolution, brightness / contrast / colour-balance
changes and some grey crops (see :func:`augment`).

Validation is grouped by photo (no photo in both halves) and reports a confusion matrix per crop
kind (``box`` = around a labelled head, ``person`` = from a person box's geometry). The decision
thresholds the runtime uses are calibrated there, on training photos only: the least probability
of a class at which held-out calls of it reach :data:`TARGET_PRECISION`; they go into the ONNX
metadata (``thresholds``) with the class names and the input size. The exported model is the one
trained on the other three quarters, so its thresholds were calibrated on photos it never saw (a
refit on everything would shift its probabilities away from them, and double the training time).

Run: ``/path/to/train-venv/bin/python training/head_classifier/train.py crops.npz out.onnx``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import onnx
import torch
from numpy.typing import NDArray
from onnx.utils import extract_model
from torch import nn
from torch.nn import functional

TARGET_PRECISION = 0.95
"""Held-out precision each emitted verdict must reach (a bare-head call raises an incident)."""


WIDTHS = (16, 24, 32, 48)
"""Channels of the four conv blocks of the from-scratch network (``--widths``)."""
BACKBONE_OUTPUTS = ("input.175", "input.283", "input.359")
"""The YOLOX-Nano COCO export's three backbone stage outputs (strides 8 / 16 / 32; 64 / 128 / 256
channels): the ends of ``dark3`` / ``dark4`` / ``dark5``, where the detector's neck takes them."""
BACKBONE_CHANNELS = (64, 128, 256)


def network(widths: tuple[int, ...] = WIDTHS) -> nn.Module:
    """The classifier: conv-BN-ReLU blocks, pooling between them, global average, linear head."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    layers: list[nn.Module] = []
    cin = 3
    for i, cout in enumerate(widths):
        layers += block(cin, cout)
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(cin, 3),
    )


def backbone_onnx(detector: Path, out: Path) -> None:
    """Cut the backbone out of the YOLOX-Nano COCO ONNX ``detector`` into ``out``.

    The input's batch, height and width become free (the detector declares 416x416, the official
    release also batch 1; the classifier feeds batches of crops). The input stays BGR 0-255, as
    the detector expects. Tested with the re-export the project's CI uses
    (``../shared/assets/models/yolox_nano_coco.onnx``); another export may name its tensors
    otherwise, and this then stops naming the ones it looked for.
    """
    model = onnx.load(str(detector))
    produced = {name for node in model.graph.node for name in node.output}
    missing = [name for name in BACKBONE_OUTPUTS if name not in produced]
    if missing:
        raise SystemExit(f"{detector}: not the YOLOX-Nano COCO export (no tensors {missing})")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "batch", "height", "width"
    full = out.with_suffix(".full.onnx")
    onnx.save(model, str(full))
    extract_model(str(full), str(out), [model.graph.input[0].name], list(BACKBONE_OUTPUTS))
    full.unlink()


class Pretrained(nn.Module):
    """A detector backbone (``onnx2torch`` module) with pooled features and a linear head."""

    def __init__(self, backbone: nn.Module, channels: tuple[int, ...] = BACKBONE_CHANNELS):
        super().__init__()
        self.backbone = backbone
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(2 * sum(channels), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Crops in 0-1 (the runtime's input) to class logits; the backbone wants 0-255."""
        stages = self.backbone(x * 255.0)
        pooled = [t.mean(dim=(2, 3)) for t in stages] + [t.amax(dim=(2, 3)) for t in stages]
        return self.head(self.drop(torch.cat(pooled, dim=1)))


def pretrained(detector: Path) -> Pretrained:
    """The v3 network over ``detector``'s backbone (needs ``onnx2torch``, training only)."""
    import tempfile

    import onnx2torch

    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "backbone.onnx"
        backbone_onnx(detector, cut)
        return Pretrained(onnx2torch.convert(str(cut)))


def to_tensor(crops: NDArray[np.uint8]) -> torch.Tensor:
    """``(N, S, S, 3)`` uint8 BGR to ``(N, 3, S, S)`` floats in 0-1 (what the runtime feeds)."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0


def augment(
    x: torch.Tensor, gen: torch.Generator, low_max: int = 0, low_share: float = 0.4
) -> torch.Tensor:
    """Flips, zoom and shifts, low resolution, brightness / contrast / colour, some grey.

    Zoom (0.8-1.25) and shifts (up to 10 % of the side) stand for a head box the runtime placed a
    little off, from person-box geometry or a PPE box; a random share of each batch is cut to a
    lower resolution (down to 10 pixels) and scaled back up, as the runtime upscales the crop of a
    small, distant head (box crops of large heads would otherwise teach sharp detail that small
    heads never show); a few crops lose their colour (night / IR cameras). ``low_max`` caps the
    lowered resolution (0: the crop side) and ``low_share`` is the share of crops lowered: a
    128-pixel crop of a head that CCTV shows 8-15 px wide holds 13-24 real pixels, which a cap of
    the full side would almost never simulate.
    """
    n, _, size, _ = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    scale = torch.exp((torch.rand(n, generator=gen) - 0.5) * 2 * math.log(1.25))
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    low = int(torch.randint(10, min(low_max or size, size), (1,), generator=gen))
    small = functional.interpolate(x, size=low, mode="area")
    small = functional.interpolate(small, size=size, mode="bilinear")
    blur = torch.rand(n, generator=gen) < low_share
    x = torch.where(blur[:, None, None, None], small, x)
    gain = 1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    channel = 1 + 0.2 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    bias = 0.25 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * gain + mean) * channel + bias
    grey = torch.rand(n, generator=gen) < 0.1
    x = torch.where(grey[:, None, None, None], x.mean(dim=1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 1)


def fit(
    net: nn.Module,
    crops: NDArray[np.uint8],
    labels: NDArray[np.int64],
    epochs: int,
    low_max: int = 0,
    low_share: float = 0.4,
) -> nn.Module:
    """Train with AdamW and a one-cycle schedule, balanced by class weights.

    From scratch every weight learns at 3e-3; a pretrained backbone learns at 1e-3 (a third:
    enough to adapt COCO features to heads, not so much that 479 photos overwrite them) and the
    new head at 1e-2."""
    gen = torch.Generator().manual_seed(0)
    x, y = to_tensor(crops), torch.from_numpy(labels)
    counts = torch.bincount(y, minlength=3).float().clamp(min=1)
    loss_fn = nn.CrossEntropyLoss(weight=(counts.sum() / counts) ** 0.5)
    if isinstance(net, Pretrained):
        groups = [
            {"params": list(net.backbone.parameters()), "lr": 1e-3},
            {"params": list(net.head.parameters()), "lr": 1e-2},
        ]
    else:
        groups = [{"params": list(net.parameters()), "lr": 3e-3}]
    opt = torch.optim.AdamW(groups, weight_decay=1e-3)
    steps = epochs * ((len(y) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[float(g["lr"]) for g in groups], total_steps=steps
    )
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 128):
            idx = order[i : i + 128]
            opt.zero_grad()
            loss = loss_fn(net(augment(x[idx], gen, low_max, low_share)), y[idx])
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{epochs}: last batch loss {float(loss.detach()):.3f}", flush=True)
    return net.eval()


def predict(net: nn.Module, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Class probabilities (in batches: a pretrained backbone's activations are large)."""
    with torch.no_grad():
        parts = [
            torch.softmax(net(to_tensor(crops[i : i + 256])), dim=1)
            for i in range(0, len(crops), 256)
        ]
    return torch.cat(parts).double().numpy() if parts else np.zeros((0, 3))


def threshold(prob: NDArray[np.float64], truth: NDArray[np.bool_], precision: float) -> float:
    """Least probability at which calls ``prob >= t`` reach ``precision`` (1.0 if none does)."""
    order = np.argsort(-prob)
    hits = np.cumsum(truth[order])
    ok = np.flatnonzero(hits / np.arange(1, len(order) + 1) >= precision)
    if len(ok) == 0:
        return 1.0
    return float(max(prob[order][ok[-1]], 0.5))  # never below a coin toss


def report(prob: NDArray[np.float64], y: NDArray[np.int64], kinds: NDArray[np.str_]) -> None:
    """Held-out confusion matrices per crop kind."""
    pred = prob.argmax(axis=1)
    for kind in ("box", "person", "background"):
        m = kinds == kind
        if m.any():
            matrix = np.zeros((3, 3), np.int64)
            np.add.at(matrix, (y[m], pred[m]), 1)
            print(
                f"held-out {kind}: accuracy {np.mean(pred[m] == y[m]):.3f} (rows truth, cols pred)"
            )
            print(matrix)


def export(net: nn.Module, size: int, meta: dict[str, str], out: Path) -> None:
    """ONNX with a dynamic batch axis, softmax included, metadata attached."""
    wrapped = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    torch.onnx.export(
        wrapped,
        (torch.zeros(1, 3, size, size),),
        str(out),
        input_names=["crops"],
        output_names=["probabilities"],
        dynamic_axes={"crops": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(out))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))


def main() -> None:
    """Train on three quarters of the photos, calibrate on the rest, export."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("crops", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--widths",
        default=",".join(map(str, WIDTHS)),
        help="channels per conv block of the from-scratch network: 16,24,32,48",
    )
    parser.add_argument(
        "--low-max",
        type=int,
        default=0,
        help="lowered resolutions are drawn from 10 up to this (exclusive; 0: the crop side)",
    )
    parser.add_argument(
        "--low-share", type=float, default=0.4, help="share of crops at a lowered resolution"
    )
    parser.add_argument(
        "--backbone",
        type=Path,
        help="fine-tune this YOLOX-Nano COCO ONNX's backbone (v3) instead of training from scratch",
    )
    args = parser.parse_args()
    if args.low_max and args.low_max <= 10:
        parser.error("--low-max must be above 10 pixels (the lowest resolution drawn), or 0")
    if not 0.0 <= args.low_share <= 1.0:
        parser.error("--low-share is a share of crops, 0-1")
    torch.set_num_threads(args.threads)
    data = np.load(args.crops)
    crops, labels = data["crops"], data["labels"].astype(np.int64)
    kinds, groups = data["kinds"], data["groups"]
    classes = [str(c) for c in data["classes"]]

    rng = np.random.default_rng(0)
    photos = np.unique(groups)
    held = rng.choice(photos, size=len(photos) // 4, replace=False)
    val = np.isin(groups, held)
    torch.manual_seed(0)
    if args.backbone is not None:
        net: nn.Module = pretrained(args.backbone)
    else:
        net = network(tuple(int(w) for w in args.widths.split(",")))
    net = fit(net, crops[~val], labels[~val], args.epochs, args.low_max, args.low_share)
    prob = predict(net, crops[val])
    y = labels[val]
    report(prob, y, kinds[val])
    thresholds = {
        name: threshold(prob[:, i], y == i, TARGET_PRECISION)
        for i, name in enumerate(classes)
        if name != "not_visible"
    }
    person = kinds[val] == "person"
    for i, name in enumerate(classes[:2]):
        called = prob[:, i] >= thresholds[name]
        recall = np.sum(called & (y == i)) / max(np.sum(y == i), 1)
        on_person = np.sum(called & (y == i) & person) / max(np.sum((y == i) & person), 1)
        print(
            f"{name}: threshold {thresholds[name]:.3f}; held-out recall {recall:.3f}, "
            f"on person crops {on_person:.3f}"
        )

    meta = {
        "classes": json.dumps(classes),
        "input_size": str(crops.shape[1]),
        "input_layout": "NCHW BGR 0-1",
        "thresholds": json.dumps(thresholds),
        "training": "safewatch training/head_classifier (data: DATA.md)",
    }
    export(net, crops.shape[1], meta, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
