"""Evidence stills in a local folder.

Stills are what an operator, an auditor or an insurer looks at later, so a still is either complete
or absent: it is encoded in memory, written to a temporary file in the destination folder, flushed
to disk and renamed over the final name (an atomic step on POSIX and Windows), so a crash never
leaves a half-written JPEG. Files are laid out as ``<camera>/<YYYY-MM-DD>/<incident id>.jpg`` (UTC
date of the frame) so a folder stays browsable and old days can be pruned by deleting folders. The
paths handed out are relative to the store's root, so the evidence folder can move.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import cv2

from safewatch.domain import Image
from safewatch.errors import StorageError

__all__ = ["JPEG_QUALITY", "EvidenceStore"]

JPEG_QUALITY = 90
"""Enough to read a hard hat's outline on a small CCTV person; a 640x352 still is ~60-90 KB."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_part(value: str) -> str:
    """A single path component from a camera or incident id (no separators, no ``..``)."""
    cleaned = _UNSAFE.sub("_", value).strip(".") or "_"
    return cleaned[:128]


class EvidenceStore:
    """Evidence files under one local folder.

    Args:
        root: The evidence folder (``StorageConfig.evidence_dir`` resolved against the site file);
            created on first write.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def still_path(self, incident_id: str, *, camera_id: str, at: float) -> str:
        """Relative path the still of this incident goes to (POSIX separators)."""
        day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
        return str(PurePosixPath(_safe_part(camera_id), day, f"{_safe_part(incident_id)}.jpg"))

    def write_still(self, incident_id: str, image: Image, *, camera_id: str, at: float) -> str:
        """Write ``image`` as the incident's JPEG still, replacing any earlier one atomically.

        Args:
            incident_id: The incident's id (file name).
            image: ``(H, W, 3)`` BGR ``uint8``, usually from :func:`draw_overlay`.
            camera_id: Camera key (first folder level).
            at: Frame time, epoch seconds (second folder level: the UTC date).

        Returns:
            The still's path relative to :attr:`root`, as stored on the incident.

        Raises:
            StorageError: The image cannot be encoded or the folder is not writable.
        """
        relative = self.still_path(incident_id, camera_id=camera_id, at=at)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise StorageError(f"cannot encode the evidence still of incident {incident_id}")
        target = self.root / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{target.stem}.", suffix=".part", dir=target.parent
            )
        except OSError as exc:
            raise StorageError(
                f"cannot write evidence in {target.parent}: {exc.strerror or exc}"
            ) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(encoded.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except OSError as exc:
            Path(temp_name).unlink(missing_ok=True)
            raise StorageError(f"cannot write evidence {target}: {exc.strerror or exc}") from exc
        return relative

    def path_of(self, relative: str) -> Path:
        """Absolute path of a stored evidence file, refusing paths that leave the root.

        Raises:
            StorageError: ``relative`` points outside the evidence folder.
        """
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise StorageError(f"evidence path {relative!r} is outside {root}")
        return path
