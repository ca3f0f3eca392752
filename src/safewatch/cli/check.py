"""``safewatch check-config``: validate a site file (and rules) without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safewatch.cli.app import app, out

if TYPE_CHECKING:
    from safewatch.config.loader import LoadedSite

__all__ = ["check_config"]


def _model_file(name: str, site: LoadedSite, *, in_use: bool) -> Path | str:
    """The file ``name`` (a model path or catalogue name) names. ``fetch_site_files`` pulled only
    what enabled cameras use (what ``serve`` loads); check-config is also the pre-flight for the
    day a disabled camera is switched on, so a name no enabled camera uses (``in_use`` false) is
    pulled here, and when it cannot be had (offline, not in the mirror, no such file) the reason
    comes back as text instead of failing the check, as ``serve`` never loads it.

    Raises:
        ModelError: A file an enabled camera needs is missing.
    """
    from safewatch.cli.fetch import fetch_named
    from safewatch.detect.catalogue import catalogue, resolve
    from safewatch.errors import ModelError

    if in_use:
        return resolve(name, site.base_dir)
    try:
        if name in catalogue() and not (site.base_dir / name).exists():
            fetch_named(name)
        return resolve(name, site.base_dir)
    except ModelError as exc:
        return f"not checked (used by no enabled camera): {exc}"


def site_helper_models(site: LoadedSite) -> list[tuple[str, Path | str]]:
    """Load the head classifier and the face detectors the site names (``privacy.faces``, per
    camera too, and ``tracker.face_subjects``) and run each once on a blank frame.

    Returns:
        What each setting names and the file it loaded, or why it was not checked (a face
        detector only disabled cameras use, which cannot be had: see :func:`_model_file`).

    Raises:
        ModelError: A file is missing or is not that kind of model.
    """

    import numpy as np

    from safewatch.errors import ModelError
    from safewatch.incidents.faces import FaceDetector
    from safewatch.track.head_check import load_head_classifier

    blank = np.zeros((64, 64, 3), np.uint8)
    loaded: list[tuple[str, Path | str]] = []
    tracker = site.config.tracker
    if tracker.head_classifier:
        classifier = load_head_classifier(tracker.head_classifier, site.base_dir)
        classifier.classify(blank, np.array([[8.0, 8.0, 40.0, 40.0]]))
        loaded.append((f"tracker.head_classifier {tracker.head_classifier}", classifier.path))
    faces = {f"tracker.face_subjects {tracker.face_subjects}": (tracker.face_subjects, True)}
    for camera_id, camera in site.config.cameras.items():
        name = site.config.privacy_for(camera_id).face_model
        label = f"privacy.faces {name}"
        earlier = faces.get(label)
        faces[label] = (name, camera.enabled or (earlier is not None and earlier[1]))
    for label, (name, in_use) in faces.items():
        if name:
            try:
                found = _model_file(name, site, in_use=in_use)
                if isinstance(found, Path):
                    FaceDetector(found).detect(blank)
            except ModelError as exc:
                raise ModelError(f"{label.split()[0]}: {exc}") from exc
            loaded.append((label, found))
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

    Catalogue names the site uses (models, demo footage) are downloaded first when missing. Models
    and face detectors that only disabled cameras (or no camera) use are pulled and checked too,
    so switching a camera on later holds no surprise; one that cannot be had (offline, not in the
    mirror) is listed as not checked and does not fail the check, since serve never loads it.
    A file camera's source must open as a video (camera URLs are not connected to), and the
    database URL must parse (the database is not connected to).
    """
    from safewatch.cli.fetch import fetch_site_files
    from safewatch.config.loader import load_site
    from safewatch.detect.model_check import check_model
    from safewatch.errors import SourceError
    from safewatch.ingest.factory import source_problem
    from safewatch.rules import load_rules
    from safewatch.storage import resolve_url

    site = load_site(config)
    # Parsed, not connected to (the database may be on another host, or not created yet): a URL
    # that does not parse passed here and failed every other command.
    resolve_url(site.config.storage.database, site.base_dir)
    fetch_site_files(site)
    in_use = {
        key for camera in site.config.cameras.values() if camera.enabled for key in camera.models
    }
    labels: dict[str, frozenset[str]] = {}
    for key, model in site.config.models.items():
        path = _model_file(model.path, site, in_use=key in in_use)
        if isinstance(path, str):
            out.print(f"model {key}: {path}", soft_wrap=True, highlight=False)
            continue
        checked = check_model(key, model, path)
        labels[key] = checked.labels
        out.print(f"model {key}: {path}: {checked.summary}", soft_wrap=True)
    for name, found in site_helper_models(site):
        state = found if isinstance(found, str) else f"{found}: loads"
        out.print(f"{name}: {state}", soft_wrap=True)
    for key, camera in site.config.cameras.items():
        problem = source_problem(key, camera, site.base_dir)
        if problem is not None and camera.enabled:
            raise SourceError(f"camera {key!r}: {problem}")
        state = "" if camera.enabled else " (disabled)"
        if problem is not None:  # serve skips a disabled camera: said, not failed, as for models
            state = f" (disabled; not usable yet: {problem})"
        out.print(
            f"camera {key}: {len(camera.models)} model(s), {camera.fps:g} fps{state}",
            soft_wrap=True,
        )
    if rules is not None:
        rule_set = load_rules(rules, site.config, model_labels=labels)
        out.print(f"rules: {len(rule_set.rules)} rule(s), {len(rule_set.zones)} zone(s)")
    out.print(f"[green]ok[/green] {config}")
