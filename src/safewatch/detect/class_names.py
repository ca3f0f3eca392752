"""Where a model's class names come from.

In order: the config's ``class_names`` (explicit beats implicit, so a user can fix a model whose
metadata is wrong), the ONNX metadata ``names`` entry that Ultralytics and YOLOv5 exporters write as
a Python dict literal (``{0: 'person', 1: 'bicycle'}``), and finally the COCO-80 list when the model
has exactly 80 classes. A count that disagrees with the model's outputs is an error, never a silent
truncation: it means the names belong to another model.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping, Sequence

from safewatch.detect.coco import COCO_CLASSES
from safewatch.errors import ModelError

__all__ = ["metadata_class_names", "metadata_image_size", "resolve_class_names"]

log = logging.getLogger(__name__)


def metadata_class_names(metadata: Mapping[str, str]) -> list[str] | None:
    """Class names from an ONNX ``names`` metadata entry, or ``None`` when absent or unreadable.

    Accepts a dict literal keyed ``0..n-1`` (Ultralytics, YOLOv5) or a list literal. Anything else
    (free text, a truncated literal) is ignored with a warning rather than trusted.
    """
    raw = metadata.get("names")
    if raw is None:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        log.info("ONNX metadata 'names' is not a literal, using other class names: %.80s", raw)
        return None
    if isinstance(value, dict) and all(isinstance(k, int) for k in value):
        if sorted(value) != list(range(len(value))):
            log.warning("ignoring ONNX metadata 'names' with non-contiguous keys")
            return None
        return [str(value[i]) for i in range(len(value))]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    log.warning("ignoring ONNX metadata 'names' of unexpected type %s", type(value).__name__)
    return None


def metadata_image_size(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """Training input ``(H, W)`` from an ``imgsz`` metadata entry (``[640, 640]`` or ``640``)."""
    raw = metadata.get("imgsz")
    if raw is None:
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, int) and value > 0:
        return value, value
    if (
        isinstance(value, list | tuple)
        and len(value) in (1, 2)
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[-1])
    return None


def resolve_class_names(
    model: str,
    num_classes: int,
    metadata: Mapping[str, str],
    configured: Sequence[str] | None,
) -> tuple[str, ...]:
    """The model's class names by index (see the module docstring for the order of sources).

    Raises:
        ModelError: The names found do not match ``num_classes``, or there are none.
    """
    from_metadata = metadata_class_names(metadata)
    if configured is not None:
        if len(configured) != num_classes:
            raise ModelError(
                f"model {model!r} outputs {num_classes} classes but class_names lists "
                f"{len(configured)}"
            )
        if from_metadata is not None and list(configured) != from_metadata:
            log.warning("model %r: class_names in the config override the model's metadata", model)
        return tuple(configured)
    if from_metadata is not None:
        if len(from_metadata) != num_classes:
            raise ModelError(
                f"model {model!r} outputs {num_classes} classes but its metadata names "
                f"{len(from_metadata)}; set class_names in the config"
            )
        return tuple(from_metadata)
    if num_classes == len(COCO_CLASSES):
        return COCO_CLASSES
    raise ModelError(
        f"model {model!r} outputs {num_classes} classes and carries no class names; "
        f"list them in class_names"
    )
