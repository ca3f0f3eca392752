"""Train the head classifier on ``crops.npz`` and export it to ONNX (step 2 of 2).

Runs in the small training environment (``training/head_classifier/requirements.txt``: PyTorch on
the CPU, 10-25 minutes on two shared cores at 48x48), never at run time: the product only loads
the exported ONNX with ONNX Runtime.

Model: a four-block convolutional network (16-24-32-48 channels, ~30 k weights, ~0.1 MB) over the
square BGR crop (48x48 from ``extract.py`` by default; 32x32 until v2), global average pooling,
three outputs ``hardhat`` / ``bare`` / ``not_visible``.
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
from torch import nn
from torch.nn import functional

TARGET_PRECISION = 0.95
"""Held-out precision each emitted verdict must reach (a bare-head call raises an incident)."""


WIDTHS = (16, 24, 32, 48)
"""Channels of the four conv blocks (``--widths``)."""


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


def to_tensor(crops: NDArray[np.uint8]) -> torch.Tensor:
    """``(N, S, S, 3)`` uint8 BGR to ``(N, 3, S, S)`` floats in 0-1 (what the runtime feeds)."""
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips, zoom and shifts, low resolution, brightness / contrast / colour, some grey.

    Zoom (0.8-1.25) and shifts (up to 10 % of the side) stand for a head box the runtime placed a
    little off, from person-box geometry or a PPE box; a random share of each batch is cut to a
    lower resolution (down to 10 pixels) and scaled back up, as the runtime upscales the crop of a
    small, distant head (box crops of large heads would otherwise teach sharp detail that small
    heads never show); a few crops lose their colour (night / IR cameras).
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
    low = int(torch.randint(10, size, (1,), generator=gen))
    small = functional.interpolate(x, size=low, mode="area")
    small = functional.interpolate(small, size=size, mode="bilinear")
    blur = torch.rand(n, generator=gen) < 0.4
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
    crops: NDArray[np.uint8],
    labels: NDArray[np.int64],
    epochs: int,
    widths: tuple[int, ...] = WIDTHS,
) -> nn.Module:
    """Train from scratch with AdamW and a cosine schedule; balanced by class weights."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = network(widths)
    x, y = to_tensor(crops), torch.from_numpy(labels)
    counts = torch.bincount(y, minlength=3).float().clamp(min=1)
    loss_fn = nn.CrossEntropyLoss(weight=(counts.sum() / counts) ** 0.5)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = epochs * ((len(y) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 128):
            idx = order[i : i + 128]
            opt.zero_grad()
            loss = loss_fn(net(augment(x[idx], gen)), y[idx])
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{epochs}: last batch loss {float(loss.detach()):.3f}", flush=True)
    return net.eval()


def predict(net: nn.Module, crops: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Class probabilities."""
    with torch.no_grad():
        return torch.softmax(net(to_tensor(crops)), dim=1).double().numpy()


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
        "--widths", default=",".join(map(str, WIDTHS)), help="channels per conv block: 16,24,32,48"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = np.load(args.crops)
    crops, labels = data["crops"], data["labels"].astype(np.int64)
    kinds, groups = data["kinds"], data["groups"]
    classes = [str(c) for c in data["classes"]]

    rng = np.random.default_rng(0)
    photos = np.unique(groups)
    held = rng.choice(photos, size=len(photos) // 4, replace=False)
    val = np.isin(groups, held)
    widths = tuple(int(w) for w in args.widths.split(","))
    net = fit(crops[~val], labels[~val], args.epochs, widths)
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
