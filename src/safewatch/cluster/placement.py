"""Which analyzer should own which camera: sticky, balanced, label-aware, deterministic.

Every analyzer computes the same plan from the same inputs (the live analyzers and the current
owners, both read from the database), so no coordinator is needed: an owner gives away a camera
the plan puts elsewhere, and the analyzer the plan names claims it.

The plan is rendezvous (highest-random-weight) hashing with bounded loads:

* **Rendezvous score**: each (camera, analyzer) pair gets a pseudo-random score from a hash, scaled
  by the analyzer's capacity (``-capacity / ln(u)``, the weighted form), so a camera prefers the
  same analyzer wherever the plan is computed, and a join or a leave only moves the cameras that
  must move.
* **Labels**: a camera may require labels (``gpu: "true"``); only analyzers carrying all of them
  are eligible.
* **Quotas**: each analyzer may hold its share of the cameras, ``N * capacity / total`` rounded
  down, the remainder going first to analyzers that already hold more (so a balanced cluster is
  left alone). With equal capacities the counts differ by at most one; a camera whose required
  labels leave it no analyzer with room goes over quota on the best eligible one (it has
  nowhere else to go), so label-restricted clusters balance only among interchangeable
  analyzers.
* **Sticky**: a camera stays with its current owner while that owner is live, eligible and within
  its quota (the cameras it scores best keep their place); only the rest are placed, each on the
  eligible analyzer with room that scores highest.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Analyzer", "eligible", "plan", "score"]


@dataclass(frozen=True)
class Analyzer:
    """A live analyzer as placement sees it."""

    analyzer_id: str
    capacity: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)


def score(camera_id: str, analyzer: Analyzer) -> float:
    """Weighted rendezvous score of ``analyzer`` for ``camera_id`` (higher wins)."""
    digest = hashlib.sha256(f"{camera_id}\x00{analyzer.analyzer_id}".encode()).digest()
    unit = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 2)  # in (0, 1), never 0 or 1
    return -max(analyzer.capacity, 0) / math.log(unit)


def eligible(required: Mapping[str, str], analyzer: Analyzer) -> bool:
    """Whether ``analyzer`` carries every label the camera requires."""
    return all(analyzer.labels.get(key) == value for key, value in required.items())


def _quotas(count: int, analyzers: Sequence[Analyzer], held: Mapping[str, int]) -> dict[str, int]:
    total = sum(max(a.capacity, 0) for a in analyzers)
    if total == 0:
        return {a.analyzer_id: 0 for a in analyzers}
    shares = {a.analyzer_id: count * max(a.capacity, 0) / total for a in analyzers}
    quotas = {key: math.floor(share) for key, share in shares.items()}
    remainder = count - sum(quotas.values())
    order = sorted(
        shares,
        key=lambda key: (
            -(held.get(key, 0) > quotas[key]),  # already holds the extra one: keep it there
            -(shares[key] - quotas[key]),
            key,
        ),
    )
    for key in order[:remainder]:
        quotas[key] += 1
    return quotas


def _ranked(
    camera_id: str, analyzers: Sequence[Analyzer], required: Mapping[str, str]
) -> list[Analyzer]:
    """The analyzers eligible for the camera, best score first (ties by id)."""
    fit = [a for a in analyzers if eligible(required, a)]
    return sorted(fit, key=lambda a: (-score(camera_id, a), a.analyzer_id))


def plan(
    camera_ids: Sequence[str],
    analyzers: Sequence[Analyzer],
    owners: Mapping[str, str | None],
    camera_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str | None]:
    """The analyzer each camera should have, ``None`` where no live analyzer is eligible.

    Args:
        camera_ids: The site's cameras.
        analyzers: The live analyzers (draining and dead ones left out).
        owners: Current owner of each camera (``None`` or absent when free or expired).
        camera_labels: Labels each camera requires.

    Returns:
        ``{camera id: analyzer id or None}`` for every camera.
    """
    labels = camera_labels or {}
    by_id = {a.analyzer_id: a for a in analyzers}
    cameras = sorted(set(camera_ids))
    choices = {camera: _ranked(camera, analyzers, labels.get(camera, {})) for camera in cameras}
    placeable = [camera for camera in cameras if choices[camera]]
    held: dict[str, int] = {}
    for camera in placeable:
        owner = owners.get(camera)
        if owner in by_id and by_id[owner] in choices[camera]:
            held[owner] = held.get(owner, 0) + 1
    quotas = _quotas(len(placeable), analyzers, held)
    load = dict.fromkeys(by_id, 0)
    target: dict[str, str | None] = dict.fromkeys(cameras)

    # Sticky: current owners keep the cameras they score best, up to their quota.
    kept = [
        (camera, owner)
        for camera in placeable
        if (owner := owners.get(camera)) in by_id and by_id[owner] in choices[camera]
    ]
    kept.sort(key=lambda pair: (-score(pair[0], by_id[pair[1]]), pair[0]))
    for camera, owner in kept:
        if load[owner] < quotas[owner]:
            target[camera] = owner
            load[owner] += 1

    # The rest: best-scoring eligible analyzer with room (over quota only if none has room).
    rest = [camera for camera in placeable if target[camera] is None]
    rest.sort(key=lambda camera: (-score(camera, choices[camera][0]), camera))
    for camera in rest:
        roomy = [a for a in choices[camera] if load[a.analyzer_id] < quotas[a.analyzer_id]]
        chosen = (roomy or choices[camera])[0]
        target[camera] = chosen.analyzer_id
        load[chosen.analyzer_id] += 1
    return target
