"""Which cameras this server may run: every enabled camera of the site, or under
``serve --cluster`` only those whose lease it holds (:mod:`safewatch.runtime.cluster_owner`).

A camera given up gracefully (drain, rebalance) stops like one removed from the site file: its
episodes end and its incidents close. A camera *lost* (its lease expired under this process)
stops without writing: its next owner takes its incidents over.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from safewatch.cluster.takeover import HANDED_OVER
from safewatch.config.site import SiteConfig
from safewatch.incidents.abandoned import camera_gone_reason

__all__ = ["CameraOwnership"]

_V = TypeVar("_V")


class CameraOwnership:
    """The cameras this process owns (``None``: all of the site's, one host) and those being
    stopped without writing.

    Args:
        cluster: Start owning none (``serve --cluster``) instead of every camera.
    """

    def __init__(self, cluster: bool) -> None:
        self._owned: frozenset[str] | None = frozenset() if cluster else None
        self._lost: set[str] = set()

    @property
    def owned(self) -> frozenset[str] | None:
        """The cameras this process may run (``None``: every enabled camera of the site)."""
        return self._owned

    def gain(self, camera_id: str) -> None:
        """``camera_id``'s lease is ours."""
        self._owned = frozenset({*(self._owned or ()), camera_id})

    @contextmanager
    def give_up(self, camera_id: str, *, write: bool) -> Iterator[None]:
        """No longer own ``camera_id``; inside the block (its stop) it counts as lost when
        ``write`` is false, so its stop writes nothing."""
        self._owned = frozenset((self._owned or frozenset()) - {camera_id})
        if not write:
            self._lost.add(camera_id)
        try:
            yield
        finally:
            self._lost.discard(camera_id)

    def is_lost(self, camera_id: str) -> bool:
        """Whether ``camera_id`` is stopping because its lease was lost (write nothing)."""
        return camera_id in self._lost

    def select(self, specs: Mapping[str, _V]) -> dict[str, _V]:
        """The entries of ``specs`` (by camera id) this process may run."""
        owned = self._owned
        return dict(specs) if owned is None else {k: v for k, v in specs.items() if k in owned}

    def stop_reason(self, camera_id: str, config: SiteConfig) -> str:
        """Why a running camera stopped (``config``: the site in force, already the new one)."""
        gone = camera_gone_reason(camera_id, config)
        if gone is not None:
            return f"{gone} while it ran"
        if self._owned is not None and camera_id not in self._owned:
            return HANDED_OVER
        return "camera restarted: its settings changed"
