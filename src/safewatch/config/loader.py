"""Load the site file: read, parse with lines, interpolate ``${VAR}``, validate.

The one entry point the CLI and the runtime use for the site file. Relative paths in the site file
(video files, models, the SQLite database, the evidence folder) are relative to the folder the
site file sits in, not to the process's working directory, so ``safewatch serve -c
/etc/safewatch/site.yaml`` behaves the same from anywhere; :class:`LoadedSite` carries that folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from safewatch.config.alerts import EmailChannelConfig, MqttChannelConfig
from safewatch.config.interpolate import Interpolation
from safewatch.config.secrets import SECRETS, register_loaded_site
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors, validate_document
from safewatch.config.yaml_lines import LocatedDocument, PathKey, format_path, parse_yaml
from safewatch.errors import ConfigError

__all__ = ["LoadedSite", "load_model", "load_site", "read_document"]

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class LoadedSite:
    """A validated site file and where it came from.

    Attributes:
        config: The validated site configuration.
        path: The site file, absolute.
        base_dir: The folder relative paths in the file are resolved against.
        secrets: The values ``${VAR}`` references expanded to: masked by value wherever the site
            is used, also in processes that receive it pickled
            (:func:`safewatch.config.secrets.register_loaded_site`).
    """

    config: SiteConfig
    path: Path
    base_dir: Path
    secrets: frozenset[str] = frozenset()

    def resolve(self, value: str | Path) -> Path:
        """Resolve a path written in the site file; absolute paths are returned unchanged."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate


def read_document(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    interpolate: bool = True,
    public: Callable[[PathKey], bool] | None = None,
) -> LocatedDocument:
    """Read and parse one YAML file with line numbers (and ``${VAR}`` expansion).

    ``public`` names the paths whose ``${VAR}`` values are not secrets (see
    :class:`~safewatch.config.interpolate.Interpolation`).

    Raises:
        ConfigError: The file cannot be read, or is not valid YAML.
    """
    return _read(path, environ, interpolate, public)[0]


def _read(
    path: str | Path,
    environ: Mapping[str, str] | None,
    interpolate: bool,
    public: Callable[[PathKey], bool] | None = None,
) -> tuple[LocatedDocument, frozenset[str]]:
    """The document and the values its ``${VAR}`` references expanded to (registered secrets)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=name) from None
    interpolation = Interpolation(os.environ if environ is None else environ, public)
    document = parse_yaml(text, name, interpolate=interpolation if interpolate else None)
    SECRETS.add(interpolation.expanded)  # ${VAR} values are masked by value everywhere
    return document, frozenset(interpolation.expanded)


def load_model(
    model: type[ModelT],
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    public: Callable[[PathKey], bool] | None = None,
) -> tuple[ModelT, LocatedDocument]:
    """Read ``path`` and validate it as ``model``; the document comes back for later checks.

    Raises:
        ConfigError: Unreadable file, YAML syntax, duplicate key, unset variable, or a
            validation error (a :class:`~safewatch.config.validation.ConfigErrors` listing all).
    """
    document = read_document(path, environ=environ, public=public)
    return validate_document(model, document), document


def _anchored(value: str | None, base_dir: Path) -> str | None:
    """``value`` as an absolute path when it names a file relative to the site's folder."""
    if value and not Path(value).expanduser().is_absolute() and (base_dir / value).is_file():
        return str(base_dir / value)
    return value


def _anchor_face_models(config: SiteConfig, base_dir: Path) -> SiteConfig:
    """Face detector files (``privacy.faces``, a camera's own, ``tracker.face_subjects``) given
    relative to the site file, made absolute: they are loaded far from the site file (evidence
    threads, trackers) by name or path, where only the working directory is at hand, and a
    relative path then named nothing, or another file (catalogue names are left as written;
    a block that names no such file is not copied at all)."""

    def anchored(block: ModelT, field: str) -> ModelT:
        value = getattr(block, field)
        moved = _anchored(value, base_dir)
        return block if moved == value else block.model_copy(update={field: moved})

    cameras = {
        key: camera
        if camera.privacy is None or anchored(camera.privacy, "faces") is camera.privacy
        else camera.model_copy(update={"privacy": anchored(camera.privacy, "faces")})
        for key, camera in config.cameras.items()
    }
    privacy = anchored(config.privacy, "faces")
    tracker = anchored(config.tracker, "face_subjects")
    moved = [cameras[key] is not camera for key, camera in config.cameras.items()]
    if privacy is config.privacy and tracker is config.tracker and not any(moved):
        return config
    return config.model_copy(update={"privacy": privacy, "tracker": tracker, "cameras": cameras})


def load_site(path: str | Path, *, environ: Mapping[str, str] | None = None) -> LoadedSite:
    """Load and validate a site file.

    Args:
        path: The site YAML file.
        environ: Variables for ``${VAR}``; defaults to ``os.environ``.

    Raises:
        ConfigError: With ``file:line: field: message`` for any problem.
    """
    document, expanded = _read(path, environ, True)
    config = validate_document(SiteConfig, document)
    absolute = Path(path).resolve()
    config = _anchor_face_models(config, absolute.parent)
    site = LoadedSite(config=config, path=absolute, base_dir=absolute.parent, secrets=expanded)
    _check_ca_files(site, document)
    register_loaded_site(site)
    return site


def _check_ca_files(site: LoadedSite, document: LocatedDocument) -> None:
    """Refuse an alert channel's ``ca_file`` that names no file (resolved as the channel does).

    Found only when sending, it passed ``check-config`` and then failed every delivery as a
    transient error (the ``OSError`` of loading it), retried for about ten minutes each.

    Raises:
        ConfigErrors: Every such channel, located.
    """
    errors = []
    for key, channel in site.config.alerts.channels.items():
        if not isinstance(channel, EmailChannelConfig | MqttChannelConfig):
            continue
        ca_file = channel.ca_file
        if ca_file is None or site.resolve(ca_file).is_file():
            continue
        path: PathKey = ("alerts", "channels", key, "ca_file")
        errors.append(
            ConfigError(
                f"CA file {str(site.resolve(ca_file))!r} not found",
                file=document.file,
                line=document.line_of(path),
                field=format_path(path),
            )
        )
    if errors:
        raise ConfigErrors(errors)
