"""The held-out training photos of bench/ppe_compliance are the ones the head classifier never saw.

``--data heldout`` is how head classifiers and settings are compared without touching the
evaluation photos; if its draw drifted from ``training/head_classifier/train.py``'s (a quarter of
the photos, seed 0), photos the classifier trained on would silently enter the figure.
"""

from __future__ import annotations

import numpy as np
from bench.ppe_compliance import DATASETS, heldout_photos


def test_heldout_is_the_training_scripts_quarter() -> None:
    held = heldout_photos(479)
    # The same call train.py makes on its crop groups (photo indices 0..478).
    rng = np.random.default_rng(0)
    expected = np.sort(rng.choice(np.unique(np.arange(479)), size=479 // 4, replace=False))
    assert np.array_equal(held, expected)
    assert len(np.unique(held)) == 119 and held[0] >= 0 and held[-1] < 479
    assert held[:8].tolist() == [1, 2, 3, 6, 8, 11, 13, 14], "pinned: the shipped model's split"


def test_heldout_reads_the_training_photos_never_the_evaluation_set() -> None:
    assert DATASETS["heldout"][0] == DATASETS["train"][0] != DATASETS["eval"][0]
