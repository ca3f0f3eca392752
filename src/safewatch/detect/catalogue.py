"""The model catalogue: list, pull (checksummed), import and inspect ONNX detection models.

Backend of ``safewatch models list | pull NAME | import PATH | info PATH``; functions return data
and raise :class:`~safewatch.errors.ModelError`, the CLI prints. Built-in entries live in
``catalogue.json`` beside this module. Downloaded and imported files go to one cache folder
(``$SAFEWATCH_MODELS``, else ``~/.cache/safewatch/models``) as ``<name>.onnx``, with an
``index.json`` recording each file's sha256, size and origin, so a site file can say
``path: yolox_nano`` and :func:`resolve` finds it offline.

Integrity: a download is hashed while it streams into a ``.part`` file and renamed into place only
when its sha256 matches the catalogue; a mismatch deletes the partial file. An entry without a
known checksum (a mirror's own build, a future entry) is trusted on first use: its sha256 is
recorded in the index, reported as ``recorded`` so the CLI can print it, and every later pull is
checked against it. ``$SAFEWATCH_MODELS_MIRROR`` replaces the download base URL (plants with an
internal mirror; tests with a local server).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from safewatch.errors import ModelError

__all__ = [
    "CACHE_ENV",
    "MIRROR_ENV",
    "CachedModel",
    "CatalogueEntry",
    "ModelDetails",
    "ModelListing",
    "ProgressCallback",
    "PullResult",
    "TensorInfo",
    "cache_dir",
    "catalogue",
    "import_model",
    "info",
    "list_models",
    "pull",
    "resolve",
]

CACHE_ENV = "SAFEWATCH_MODELS"
MIRROR_ENV = "SAFEWATCH_MODELS_MIRROR"
INDEX_FILE = "index.json"
_CHUNK = 1 << 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes received, total bytes or ``None`` when the server does not say)."""


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A model safewatch knows how to download.

    Attributes:
        name: Catalogue key (``yolox_nano``); also the cached file's stem.
        description: One line for ``models list``.
        url: Official download URL.
        format: Output layout for the detector (``yolox``, ``yolov8``, ...).
        input_size: Square network input in pixels.
        labels: Label set of the classes (``coco``: :data:`safewatch.detect.coco.COCO_CLASSES`).
        licence: SPDX id of the weights' licence.
        size: Bytes, when known.
        sha256: Hex digest, when known; ``None`` means trust on first use.
    """

    name: str
    description: str
    url: str
    format: str
    input_size: int
    labels: str
    licence: str
    size: int | None = None
    sha256: str | None = None

    @property
    def filename(self) -> str:
        """File name at the end of the URL (what a mirror serves)."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class CachedModel:
    """A model file in the cache, as recorded in its index.

    Attributes:
        name: Name it resolves under.
        path: Absolute path of the ``.onnx`` file.
        sha256: Digest computed when it entered the cache.
        size: Bytes.
        source: ``pull`` or ``import``.
        origin: URL it was downloaded from, or the path it was imported from.
        added_at: Epoch seconds it entered the cache.
    """

    name: str
    path: Path
    sha256: str
    size: int
    source: Literal["pull", "import"]
    origin: str
    added_at: float


@dataclass(frozen=True, slots=True)
class ModelListing:
    """One row of ``models list``: a catalogue entry, a cached file, or both."""

    name: str
    entry: CatalogueEntry | None
    cached: CachedModel | None

    @property
    def format(self) -> str | None:
        """Output layout, for catalogue entries (imports: ``None``, the detector detects it)."""
        return None if self.entry is None else self.entry.format

    @property
    def input_size(self) -> int | None:
        """Network input size of a catalogue entry."""
        return None if self.entry is None else self.entry.input_size

    @property
    def licence(self) -> str | None:
        """SPDX licence id of a catalogue entry."""
        return None if self.entry is None else self.entry.licence

    license = licence

    @property
    def url(self) -> str | None:
        """Official download URL; ``None`` for imported models."""
        return None if self.entry is None else self.entry.url

    @property
    def matches_catalogue(self) -> bool | None:
        """Whether the cached file is the catalogue's (``None``: nothing to compare)."""
        if self.entry is None or self.cached is None or self.entry.sha256 is None:
            return None
        return self.entry.sha256 == self.cached.sha256


@dataclass(frozen=True, slots=True)
class PullResult:
    """Outcome of :func:`pull`.

    Attributes:
        model: The cached file.
        downloaded: False when the file was already cached and intact.
        checksum: ``verified`` (matched a known sha256), ``recorded`` (none was known: this one is
            now trusted, print it), or ``cached`` (already present, re-hashed and matching).
    """

    model: CachedModel
    downloaded: bool
    checksum: Literal["verified", "recorded", "cached"]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """An ONNX graph input or output; symbolic dimensions are strings, unknown ones ``None``."""

    name: str
    shape: tuple[int | str | None, ...]
    type: str


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """What ``models info`` shows about an ONNX file."""

    path: Path
    size: int
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    producer: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for ``models info`` output."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def catalogue() -> dict[str, CatalogueEntry]:
    """The built-in entries, by name."""
    text = resources.files("safewatch.detect").joinpath("catalogue.json").read_text("utf-8")
    raw: dict[str, dict[str, Any]] = json.loads(text)["models"]
    return {name: CatalogueEntry(name=name, **fields) for name, fields in raw.items()}


def cache_dir() -> Path:
    """``$SAFEWATCH_MODELS`` if set, else ``~/.cache/safewatch/models`` (not created here)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "safewatch" / "models"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ModelError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)"
        )


def _read_index(cache: Path) -> dict[str, CachedModel]:
    path = cache / INDEX_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text("utf-8"))["models"]
        return {
            name: CachedModel(
                name=name,
                path=cache / record["file"],
                sha256=record["sha256"],
                size=int(record["size"]),
                source=record["source"],
                origin=record["origin"],
                added_at=float(record["added_at"]),
            )
            for name, record in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model cache index {path} is unreadable ({exc}); delete it") from exc


def _write_index(cache: Path, models: dict[str, CachedModel]) -> None:
    records = {
        m.name: {
            "file": m.path.name,
            "sha256": m.sha256,
            "size": m.size,
            "source": m.source,
            "origin": m.origin,
            "added_at": m.added_at,
        }
        for m in sorted(models.values(), key=lambda m: m.name)
    }
    text = json.dumps({"version": 1, "models": records}, indent=2) + "\n"
    fd, temp = tempfile.mkstemp(prefix=".index.", suffix=".part", dir=cache)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, cache / INDEX_FILE)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ModelError(f"cannot write the model cache index in {cache}: {exc}") from exc


def _record(cache: Path, model: CachedModel) -> None:
    models = _read_index(cache)
    models[model.name] = model
    _write_index(cache, models)


def _ensure_cache(cache: Path) -> Path:
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache {cache}: {exc.strerror or exc}") from exc
    return cache


def list_models(cache: Path | None = None) -> list[ModelListing]:
    """Catalogue entries and cached models, catalogue first, then imports by name."""
    cached = _read_index(cache or cache_dir())
    entries = catalogue()
    rows = [ModelListing(name, entry, cached.get(name)) for name, entry in entries.items()]
    rows += [ModelListing(n, None, m) for n, m in sorted(cached.items()) if n not in entries]
    return rows


def _download_url(entry: CatalogueEntry, url: str | None) -> str:
    if url is not None:
        return url
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{entry.filename}"
    return entry.url


def _stream(
    url: str, handle: Any, timeout: float, progress: ProgressCallback | None
) -> tuple[str, int]:
    """Copy ``url`` into ``handle``; return (sha256, bytes)."""
    digest = hashlib.sha256()
    done = 0
    request = urllib.request.Request(url, headers={"User-Agent": "safewatch-models"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        while chunk := response.read(_CHUNK):
            handle.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total is not None and done != total:
        # urllib returns a short body without complaint when the connection drops.
        raise ValueError(f"received {done} of {total} bytes")
    return digest.hexdigest(), done


def _fetch(
    name: str, url: str, cache: Path, timeout: float, progress: ProgressCallback | None
) -> tuple[Path, str, int]:
    """Download into a ``.part`` file in the cache; the caller verifies and renames it."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            sha256, size = _stream(url, handle, timeout, progress)
            handle.flush()
            os.fsync(handle.fileno())
    except urllib.error.HTTPError as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(
            f"download of {name} failed: HTTP {exc.code} {exc.reason} from {url}"
        ) from exc
    except urllib.error.URLError as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(
            f"cannot reach {url} to download {name} ({exc.reason}). Without internet, copy the "
            f"file here by other means and run `safewatch models import /path/to/file.onnx "
            f"--name {name}`"
        ) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(f"download of {name} from {url} was interrupted: {exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, sha256, size


def pull(
    name: str,
    *,
    cache: Path | None = None,
    url: str | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> PullResult:
    """Download a catalogue model into the cache, verifying its sha256.

    Args:
        name: Catalogue name (see :func:`catalogue`).
        cache: Cache folder; default :func:`cache_dir`.
        url: Download from here instead of the catalogue URL or ``$SAFEWATCH_MODELS_MIRROR``.
        progress: Called as bytes arrive.
        force: Download again even when an intact copy is cached.
        timeout: Seconds to wait for the server on connect and on each read.

    Raises:
        ModelError: Unknown name, unreachable server, HTTP error, size or checksum mismatch (the
            partial file is deleted), or an unwritable cache.
    """
    entries = catalogue()
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(entries)
        raise ModelError(f"no model {name!r} in the catalogue (known: {known})")
    folder = _ensure_cache(cache or cache_dir())
    recorded = _read_index(folder).get(name)
    expected = entry.sha256 or (recorded.sha256 if recorded and recorded.source == "pull" else None)
    if (
        not force
        and recorded is not None
        and recorded.path.is_file()
        and recorded.sha256 == (expected or recorded.sha256)
        and _sha256_file(recorded.path) == recorded.sha256
    ):
        return PullResult(recorded, downloaded=False, checksum="cached")
    source = _download_url(entry, url)
    temp, sha256, size = _fetch(name, source, folder, timeout, progress)
    problem = None
    if entry.size is not None and entry.sha256 is not None and size != entry.size:
        problem = f"size mismatch for {name}: expected {entry.size} bytes, got {size}"
    elif expected is not None and sha256 != expected:
        problem = f"checksum mismatch for {name}: expected sha256 {expected}, got {sha256}"
    if problem is not None:
        temp.unlink(missing_ok=True)
        raise ModelError(f"{problem} (from {source}); the partial download was deleted")
    target = folder / f"{name}.onnx"
    try:
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(f"cannot move the download into {target}: {exc}") from exc
    model = CachedModel(name, target, sha256, size, "pull", source, time.time())
    _record(folder, model)
    return PullResult(model, downloaded=True, checksum="verified" if expected else "recorded")


def import_model(
    path: Path, *, name: str | None = None, cache: Path | None = None, force: bool = False
) -> CachedModel:
    """Copy a local ONNX file into the cache under ``name`` (default: the file's stem).

    The file is opened with ONNX Runtime first, so a truncated or non-ONNX file is refused here
    rather than when a camera starts. Importing the same bytes again is a no-op.

    Raises:
        ModelError: Missing or invalid file, bad name, a different file already cached under that
            name (pass ``force``), or an unwritable cache.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise ModelError(f"no model file at {source}")
    details = info(source)
    name = name or source.stem
    _check_name(name)
    folder = _ensure_cache(cache or cache_dir())
    existing = _read_index(folder).get(name)
    if existing is not None and existing.path.exists():
        if existing.sha256 == details.sha256:
            return existing
        if not force:
            raise ModelError(
                f"a different model is already cached as {name!r} (sha256 {existing.sha256}); "
                "choose another --name or replace it with --force"
            )
    target = folder / f"{name}.onnx"
    fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        shutil.copyfile(source, temp_name)
        if _sha256_file(Path(temp_name)) != details.sha256:
            raise ModelError(f"{source} changed while it was being imported; try again")
        os.replace(temp_name, target)
    except OSError as exc:
        raise ModelError(f"cannot copy {source} into {folder}: {exc}") from exc
    finally:
        Path(temp_name).unlink(missing_ok=True)
    model = CachedModel(
        name, target, details.sha256, details.size, "import", str(source.resolve()), time.time()
    )
    _record(folder, model)
    return model


def _tensors(nodes: Any) -> tuple[TensorInfo, ...]:
    return tuple(
        TensorInfo(
            name=str(node.name),
            shape=tuple(d if isinstance(d, int | str) else None for d in node.shape),
            type=str(node.type),
        )
        for node in nodes
    )


def info(path: Path | str, *, cache: Path | None = None) -> ModelDetails:
    """Inputs, outputs, metadata, size and sha256 of an ONNX file, read with ONNX Runtime.

    Args:
        path: An ``.onnx`` file, or the name of a cached model.
        cache: Cache folder for names; default :func:`cache_dir`.

    Raises:
        ModelError: The file is missing or is not a model ONNX Runtime can load.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        cached = _read_index(cache or cache_dir()).get(str(path))
        if cached is None or not cached.path.is_file():
            raise ModelError(f"no model file at {path}")
        path = cached.path
    import onnxruntime as ort  # slow to import; only the commands that need it pay

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own, unexported exception types
        raise ModelError(f"{path} is not a valid ONNX model: {exc}") from exc
    meta = session.get_modelmeta()
    return ModelDetails(
        path=path.resolve(),
        size=path.stat().st_size,
        sha256=_sha256_file(path),
        inputs=_tensors(session.get_inputs()),
        outputs=_tensors(session.get_outputs()),
        producer=str(meta.producer_name),
        metadata={str(k): str(v) for k, v in meta.custom_metadata_map.items()},
    )


def resolve(name_or_path: str, base_dir: Path, *, cache: Path | None = None) -> Path:
    """Turn a site file's ``models.*.path`` into a file: an existing path, else a cached name.

    Args:
        name_or_path: Path (relative to ``base_dir``) or catalogue / imported name.
        base_dir: The site file's folder.
        cache: Cache folder; default :func:`cache_dir`.

    Raises:
        ModelError: Neither a file nor a cached model; the message says how to get it.
    """
    candidate = Path(name_or_path).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.is_file():
        return candidate
    folder = cache or cache_dir()
    cached = _read_index(folder).get(name_or_path)
    if cached is not None and cached.path.is_file():
        return cached.path
    hint = (
        f"`safewatch models pull {name_or_path}` (needs internet) or "
        f"`safewatch models import /path/to/file.onnx --name {name_or_path}`"
    )
    if name_or_path in catalogue():
        raise ModelError(f"model {name_or_path!r} is not in the cache {folder} yet: run {hint}")
    known = ", ".join(catalogue())
    raise ModelError(
        f"model {name_or_path!r} not found: no file at {candidate}, and it is neither a catalogue "
        f"name ({known}) nor an imported model. Get one with `safewatch models pull yolox_nano` "
        "(needs internet) or `safewatch models import /path/to/file.onnx`"
    )
