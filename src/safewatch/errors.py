"""One exception tree for the whole package.

Every error a user can cause (a bad config, an unreachable camera, a wrong model file) is a
``SafewatchError`` subclass with a message written for that user. The CLI prints the message on one
line and exits non-zero; the API (later) maps each class to one JSON error shape. Anything that is
not a ``SafewatchError`` is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EditConflict",
    "FencedWrite",
    "ModelError",
    "NotFound",
    "SafewatchError",
    "SourceError",
    "StorageError",
]


class SafewatchError(Exception):
    """Base of every error safewatch raises on purpose."""


class ConfigError(SafewatchError):
    """A site or rule file is malformed or inconsistent.

    The message reads ``file:line: field: message`` when the location is known, so an editor can
    jump to it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        super().__init__(self.format())

    def format(self) -> str:
        """Render as ``file:line: field: message``, leaving out the parts that are unknown."""
        location = ""
        if self.file is not None:
            location = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [p for p in (location, self.field, self.message) if p]
        return ": ".join(parts)


class SourceError(SafewatchError):
    """A video source cannot be opened or decoded (missing file, corrupt stream, bad URL)."""


class ModelError(SafewatchError):
    """A model file is missing, unreadable, or has an output layout safewatch does not support."""


class StorageError(SafewatchError):
    """The database or the evidence store cannot be read or written."""


class FencedWrite(StorageError):
    """An incident write of a camera this analyzer no longer owns (``serve --cluster``).

    The camera's lease is now another analyzer's, or this one's epoch is stale (it froze or lost
    the database past its lease), so the write's transaction was rolled back
    (:class:`safewatch.cluster.EpochFence`). Whoever gets it must treat it as "I am no longer the
    owner": drop the change, never retry it. A :class:`StorageError`, so the paths that already
    survive a failed write survive this one too (the evidence store deletes a file whose chain
    entry was refused, the evidence thread logs and goes on).
    """

    def __init__(self, camera_id: str, held: int | None, owner: str | None, epoch: int | None):
        self.camera_id = camera_id
        self.held = held
        self.owner = owner
        self.epoch = epoch
        super().__init__(
            f"camera {camera_id!r}: write refused, this analyzer holds epoch {held} but the "
            f"lease is now owner {owner!r} at epoch {epoch}"
        )


class EditConflict(SafewatchError):
    """A change made against a version of a file that has changed since (another admin saved
    meanwhile); applying it would silently undo their change. The API answers 409."""


class NotFound(SafewatchError):
    """A named thing (incident, camera, model, rule) does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")
