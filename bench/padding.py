"""Find mirror-padded borders (``cv2.BORDER_REFLECT``-style) in dataset images.

Many Hard Hat Workers images were fitted into a 416x416 square by *reflecting* the picture's edges
instead of padding with a flat colour (an export option of common dataset tools): a 4:3 photo gets
52 mirrored rows above and below, a 3:2 photo about 69. The labels were carried into the padding, so
every helmet that close to an edge has an upside-down (or left-right) mirrored twin that is
labelled as a real helmet. A detector that sees the world the right way up rightly ignores most
of them, and the raw AP then measures the dataset's augmentation more than the detector.
:func:`detect_padding` finds those bands so an evaluation can treat them as *ignore* regions (as
VOC does with ``difficult`` and COCO with crowd boxes).

How a side is tested, with that side turned to the top: a padding ``p`` rows wide means row
``p - 1 - k`` equals row ``p + k`` for every ``k < p`` (``BORDER_REFLECT``; ``BORDER_REFLECT_101``
pairs ``p - k`` with ``p + k`` instead, both are tried). The mirror error is the mean absolute
difference of those row pairs over the whole band; it is compared with the mean difference of the
same rows *translated* by ``p`` (row ``k`` against row ``p + k``), which measures how much the
picture changes over that distance. A real mirror gives a ratio near 0 (0.00 for an exact copy;
on the 439 bands found in Hard Hat Workers the median is 0.03 and the largest 0.16, as the padded
images were resized or recompressed); for the 444 unpadded sides the best width scores 0.38 or more
(one, fine gravel opposite a found band, 0.28). The band must also have texture (a flat sky
mirrors itself trivially), and of all widths passing the test the one with the lowest ratio wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_RATIO",
    "MIN_TEXTURE",
    "PAIR_RATIO",
    "Padding",
    "detect_padding",
    "side_padding",
]

MAX_RATIO = 0.25
"""Largest mirror/translation error ratio accepted as a reflection."""
MIN_TEXTURE = 2.0
"""Smallest mean grey-level change (0-255) over the band for its symmetry to count as evidence."""
MIN_WIDTH = 4
"""Narrower mirrored bands are not reported (too little evidence, too little area to matter)."""
MAX_FRACTION = 0.45
"""A padding band is at most this fraction of the image side."""
SAMPLES = 96
"""Each row (column) is averaged down to this many samples before testing: averaging along the
mirror axis keeps the symmetry and makes the test twice as fast (about 50 ms for a 416x416
image; the same result on all 221 Hard Hat Workers images as at full resolution)."""
PAIR_RATIO = 0.6
"""Ratio accepted for the side opposite a found band, at that band's width."""
FLAT = 1.0
"""Mirror error (grey levels) below which a textureless band opposite a found one is accepted."""


@dataclass(frozen=True, slots=True)
class Padding:
    """Mirror-padded bands of one image, in pixels from each edge (0: no padding on that side).

    Attributes:
        height: Image height in pixels.
        width: Image width in pixels.
        top: Mirrored rows at the top.
        bottom: Mirrored rows at the bottom.
        left: Mirrored columns at the left.
        right: Mirrored columns at the right.
    """

    height: int
    width: int
    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    @property
    def any(self) -> bool:
        """Whether any side is padded."""
        return bool(self.top or self.bottom or self.left or self.right)

    @property
    def content(self) -> tuple[int, int, int, int]:
        """The original picture inside the padding as ``x1, y1, x2, y2`` (exclusive ends)."""
        return self.left, self.top, self.width - self.right, self.height - self.bottom

    @property
    def padded_fraction(self) -> float:
        """Share of the image area that is mirrored padding."""
        x1, y1, x2, y2 = self.content
        return 1.0 - (x2 - x1) * (y2 - y1) / (self.width * self.height)

    def covers(self, xyxy: NDArray[np.floating]) -> NDArray[np.bool_]:
        """For ``(N, 4)`` boxes: whether each box's centre lies in the padding."""
        boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        x1, y1, x2, y2 = self.content
        inside = (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
        return np.asarray(~inside, np.bool_)


def _scores(rows: NDArray[np.float32], p: int) -> tuple[float, float]:
    """``(mirror, moved)`` errors of a ``p``-row band at the top of ``rows`` (see module doc)."""
    band = rows[:p][::-1]
    mirror = min(
        float(np.abs(band - rows[p : 2 * p]).mean()),  # BORDER_REFLECT: axis between rows
        float(np.abs(band - rows[p + 1 : 2 * p + 1]).mean()),  # BORDER_REFLECT_101: on row p
    )
    moved = float(np.abs(rows[:p] - rows[p : 2 * p]).mean())
    return mirror, moved


def side_padding(
    rows: NDArray[np.float32],
    *,
    max_ratio: float = MAX_RATIO,
    min_texture: float = MIN_TEXTURE,
    min_width: int = MIN_WIDTH,
    max_fraction: float = MAX_FRACTION,
) -> tuple[int, float]:
    """Width of the mirrored band at the *top* of a ``(H, W)`` grey image, and its ratio.

    Returns:
        ``(p, ratio)``: the band's width in rows (0 when none passes) and the mirror/translation
        error ratio of the chosen width (of the best candidate when none passes, for diagnosis).
    """
    n = rows.shape[0]
    best_p, best_ratio = 0, float("inf")
    for p in range(min_width, min(int(n * max_fraction), (n - 1) // 2) + 1):
        mirror, moved = _scores(rows, p)
        if moved < min_texture:
            continue
        ratio = mirror / moved
        if ratio < best_ratio:
            best_p, best_ratio = p, ratio
    if best_ratio <= max_ratio:
        return best_p, best_ratio
    return 0, best_ratio


def _confirms(rows: NDArray[np.float32], width: int) -> int:
    """The width near ``width`` at which the top of ``rows`` is plausibly mirrored, else 0.

    Used for the side opposite a found band: a centred fit pads both sides alike, so a weaker
    test suffices there (fine texture such as gravel loses some symmetry when the padded image
    is resized; a flat sky has no texture to prove anything but mirrors itself).
    """
    for p in (width, width - 1, width + 1):
        if p < MIN_WIDTH or 2 * p + 1 > rows.shape[0]:
            continue
        mirror, moved = _scores(rows, p)
        if mirror < FLAT or (moved >= MIN_TEXTURE and mirror / moved <= PAIR_RATIO):
            return p
    return 0


def detect_padding(
    image: NDArray[np.uint8],
    *,
    max_ratio: float = MAX_RATIO,
    min_texture: float = MIN_TEXTURE,
    samples: int = SAMPLES,
) -> Padding:
    """Find the mirror-padded band on each side of a BGR (or grey) ``uint8`` image.

    Each side is tested on its own with :func:`side_padding`; when only one side of a pair
    (top/bottom, left/right) is found, the other is re-tested at the same width with the weaker
    :data:`PAIR_RATIO` (or accepted if the band is flat and mirrors to within :data:`FLAT`).

    Args:
        image: ``(H, W, 3)`` BGR or ``(H, W)`` grey picture.
        max_ratio: See :data:`MAX_RATIO`.
        min_texture: See :data:`MIN_TEXTURE`.
        samples: See :data:`SAMPLES`.
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    g = np.asarray(grey, np.float32)
    h, w = g.shape
    rows = np.asarray(cv2.resize(g, (min(samples, w), h), interpolation=cv2.INTER_AREA), np.float32)
    cols = np.asarray(
        cv2.resize(g, (w, min(samples, h)), interpolation=cv2.INTER_AREA), np.float32
    ).T
    views = (rows, rows[::-1], cols, cols[::-1])  # each side turned to the top: t, b, l, r
    found = [side_padding(v, max_ratio=max_ratio, min_texture=min_texture)[0] for v in views]
    for a, b in ((0, 1), (2, 3)):
        if bool(found[a]) != bool(found[b]):
            missing = b if found[a] else a
            found[missing] = _confirms(views[missing], found[a] or found[b])
    top, bottom, left, right = found
    return Padding(h, w, top, bottom, left, right)
