"""``safewatch check-config``: validate a site file (and rules) without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.cli.app import app, out

if TYPE_CHECKING:
    from safewatch.config.loader import LoadedSite

__all__ = ["check_config"]


def site_helper_models(site: LoadedSite) -> list[tuple[str, Path]]:
    """Load the head classifier and the face detectors the site names (``privacy.faces``, per
    camera too, and ``tracker.face_subjects``) and run each once on a blank frame.

    Returns:
        What each setting names and the file it loaded.

    Raises:
        ModelError: A file is missing or is not that kind of model.
    """

    import numpy as np

    from safewatch.detect.catalogue import resolve
    from safewatch.errors import ModelError
    from safewatch.incidents.faces import FaceDetector
    from safewatch.track.head_check import HeadClassifier, head_classifier_file

    blank = np.zeros((64, 64, 3), np.uint8)
    loaded: list[tuple[str, Path]] = []
    tracker = site.config.tracker
    if tracker.head_classifier:
        path = head_classifier_file(tracker.head_classifier, site.base_dir)
        HeadClassifier(path).classify(blank, np.array([[8.0, 8.0, 40.0, 40.0]]))
        loaded.append((f"tracker.head_classifier {tracker.head_classifier}", path))
    faces = {f"tracker.face_subjects {tracker.face_subjects}": tracker.face_subjects}
    for camera_id in site.config.cameras:
        privacy = site.config.privacy_for(camera_id)
        faces.setdefault(f"privacy.faces {privacy.face_model}", privacy.face_model)
    for label, name in faces.items():
        if name:
            try:
                path = resolve(name, site.base_dir)
                FaceDetector(path).detect(blank)
            except ModelError as exc:
                raise ModelError(f"{label.split()[0]}: {exc}") from exc
            loaded.append((label, path))
    return loaded


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="Site file (safewatch.yaml).")],
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Rules folder or file to check too.")
    ] = None,
) -> None:
    """Validate a site file (and rules): every model loads and runs once on a blank frame (the
    head classifier and face detectors too), cameras and rules are consistent.

    Catalogue names the site uses (models, demo footage) are downloaded first when missing.
    """
    from safewatch.cli.fetch import fetch_site_files
    from safewatch.config.loader import load_site
    from safewatch.detect.catalogue import resolve
    from safewatch.detect.model_check import check_model
    from safewatch.rules import load_rules

    site = load_site(config)
    fetch_site_files(site)
    labels: dict[str, frozenset[str]] = {}
    for key, model in site.config.models.items():
        path = resolve(model.path, site.base_dir)
        checked = check_model(key, model, path)
        labels[key] = checked.labels
        out.print(f"model {key}: {path}: {checked.summary}", soft_wrap=True)
    for name, path in site_helper_models(site):
        out.print(f"{name}: {path}: loads", soft_wrap=True)
    for key, camera in site.config.cameras.items():
        state = "" if camera.enabled else " (disabled)"
        out.print(f"camera {key}: {len(camera.models)} model(s), {camera.fps:g} fps{state}")
    if rules is not None:
        rule_set = load_rules(rules, site.config, model_labels=labels)
        out.print(f"rules: {len(rule_set.rules)} rule(s), {len(rule_set.zones)} zone(s)")
    out.print(f"[green]ok[/green] {config}")
