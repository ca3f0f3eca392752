"""The catalogue: list, pull (checksummed), import and inspect models, and fetch demo footage.

Backend of ``safewatch models list | pull NAME | import PATH | info PATH``; functions return data
and raise :class:`~safewatch.errors.ModelError`, the CLI prints. Built-in entries live in
``catalogue.json`` beside this module: ONNX detection models, and demo videos (so the example site
runs on a machine that has only the repository). Downloaded and imported files go to one cache
folder (``$SAFEWATCH_MODELS``, else ``~/.cache/safewatch/models``) as ``<name>.onnx`` (videos:
``<name>.mp4``), with an ``index.json`` recording each file's sha256, size and origin, so a site
file can say ``path: yolox_nano`` or ``source: construction_cctv`` and :func:`resolve` finds it
offline.

Integrity: a download is hashed while it streams into a ``.part`` file and renamed into place only
when its sha256 matches the one pinned for where it came from (:mod:`safewatch.detect.fetching`:
upstream URL or a mirror's file); a mismatch deletes the partial file. A file published broken is
then converted by the entry's recorded ``prepare`` step (an ONNX repair, a trim), and the result's
sha256 is recorded in the index. An entry without a known checksum is trusted on first use: its
sha256 is recorded, reported as ``recorded`` so the CLI can print it, and every later pull is
checked against it. ``$SAFEWATCH_MIRROR`` (a URL or a folder) replaces the internet.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from safewatch.detect.fetching import (
    MIRROR_ENV,
    Candidate,
    Fetched,
    MirrorFile,
    ProgressCallback,
    candidates,
    fetch_first,
    prepare,
)
from safewatch.errors import ModelError

__all__ = [
    "CACHE_ENV",
    "MIRROR_ENV",
    "CachedModel",
    "CatalogueEntry",
    "MirrorFile",
    "ModelDetails",
    "ModelListing",
    "ProgressCallback",
    "PullResult",
    "TensorInfo",
    "cache_dir",
    "catalogue",
    "catalogue_class_names",
    "import_model",
    "info",
    "list_models",
    "pull",
    "resolve",
    "resolve_video",
]

log = logging.getLogger(__name__)

CACHE_ENV = "SAFEWATCH_MODELS"
INDEX_FILE = "index.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A model (or demo video) safewatch knows how to download.

    Attributes:
        name: Catalogue key (``yolox_nano``); also the cached file's stem.
        description: One line for ``models list``.
        url: Public upstream URL, pinned (a release asset, or a raw file at a commit).
        licence: SPDX id of the file's licence.
        format: Output layout for the detector (``yolox``, ``yolov8``, ...); ``""`` for videos.
        input_size: Square network input in pixels; ``None`` for videos.
        labels: Label set of the classes (``coco``: :data:`safewatch.detect.coco.COCO_CLASSES`).
        size: Bytes of the upstream file, when known.
        sha256: Hex digest of the upstream file, when known; ``None`` means trust on first use.
        kind: ``model`` or ``video``.
        prepare: The recorded conversion applied after download (``{"step": ..., ...}``), for
            files published in a form that does not work as is; ``None`` when none.
        mirror: Other files a mirror may serve instead, each with its own pinned checksum.
    """

    name: str
    description: str
    url: str
    licence: str
    format: str = ""
    input_size: int | None = None
    labels: str = ""
    size: int | None = None
    sha256: str | None = None
    kind: Literal["model", "video"] = "model"
    prepare: Mapping[str, Any] | None = None
    mirror: tuple[MirrorFile, ...] = ()

    @property
    def filename(self) -> str:
        """File name at the end of the URL (what a flat mirror serves)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        """Extension of the cached file."""
        return ".mp4" if self.kind == "video" else ".onnx"

    def accepts(self, fetched_sha256: str) -> bool:
        """Whether a download with this digest is one of the files the entry pins."""
        return fetched_sha256 == self.sha256 or any(m.sha256 == fetched_sha256 for m in self.mirror)


@dataclass(frozen=True, slots=True)
class CachedModel:
    """A model file in the cache, as recorded in its index.

    Attributes:
        name: Name it resolves under.
        path: Absolute path of the ``.onnx`` file.
        sha256: Digest computed when it entered the cache.
        size: Bytes.
        source: ``pull``, ``import``, or ``package`` (shipped inside safewatch).
        origin: URL it was downloaded from, or the path it was imported from.
        added_at: Epoch seconds it entered the cache.
        fetched_sha256: Digest of what was downloaded, before any ``prepare`` step (the one the
            catalogue pins); equal to ``sha256`` when nothing was converted.
    """

    name: str
    path: Path
    sha256: str
    size: int
    source: Literal["pull", "import", "package"]
    origin: str
    added_at: float
    fetched_sha256: str = ""

    @property
    def fetched(self) -> str:
        """Digest of the downloaded file (``sha256`` for records older than the field)."""
        return self.fetched_sha256 or self.sha256


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
    def kind(self) -> str:
        """``model`` or ``video`` (imports are models)."""
        return "model" if self.entry is None else self.entry.kind

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
    def state(self) -> Literal["no", "yes", "packaged", "missing", "damaged"]:
        """The ``cached`` column of ``models list``: whether the file is there and of the size
        the index recorded (a ``stat``, no hashing: ``models info`` and every pull re-hash).

        ``missing`` and ``damaged`` (a truncated copy) are what the index alone called cached.
        """
        if self.cached is None:
            return "no"
        if self.cached.source == "package":
            return "packaged"
        try:
            size = self.cached.path.stat().st_size
        except OSError:
            return "missing"
        return "yes" if size == self.cached.size else "damaged"

    @property
    def matches_catalogue(self) -> bool | None:
        """Whether the cached file is one the catalogue pins (``None``: nothing to compare).

        It counts when what was downloaded or imported is the upstream file or one of the
        entry's pinned mirror files, the same test :func:`pull` applies to a cached copy.
        """
        if self.entry is None or self.cached is None or self.entry.sha256 is None:
            return None
        return self.entry.accepts(self.cached.fetched)


@dataclass(frozen=True, slots=True)
class PullResult:
    """Outcome of :func:`pull`.

    Attributes:
        model: The cached file.
        downloaded: False when the file was already cached and intact.
        checksum: ``verified`` (matched a known sha256), ``recorded`` (none was known: this one is
            now trusted, print it), ``cached`` (already present, re-hashed and matching) or
            ``packaged`` (shipped inside safewatch, checked against its pinned sha256).
    """

    model: CachedModel
    downloaded: bool
    checksum: Literal["verified", "recorded", "cached", "packaged"]


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


def _entry(name: str, kind: Literal["model", "video"], fields: dict[str, Any]) -> CatalogueEntry:
    mirror = tuple(MirrorFile(**m) for m in fields.pop("mirror", ()))
    return CatalogueEntry(name=name, kind=kind, mirror=mirror, **fields)


def catalogue() -> dict[str, CatalogueEntry]:
    """The built-in entries (models, then demo videos), by name."""
    text = resources.files("safewatch.detect").joinpath("catalogue.json").read_text("utf-8")
    raw: dict[str, dict[str, dict[str, Any]]] = json.loads(text)
    entries = {name: _entry(name, "model", dict(f)) for name, f in raw["models"].items()}
    entries |= {name: _entry(name, "video", dict(f)) for name, f in raw.get("videos", {}).items()}
    return entries


def catalogue_class_names(name_or_path: str, base_dir: Path) -> tuple[str, ...] | None:
    """The class names of a site file's catalogue model, where the catalogue knows them.

    A COCO model named by its catalogue name (``path: yolox_nano``) produces COCO's classes, so
    a camera's label checks (head mode, PPE items) need not wait for its file to load. ``None``
    for a path that is a file (:func:`resolve` prefers it), an imported or unknown name, and a
    catalogue set only the file spells out (``ppe14``). A catalogue name always means the
    catalogue's bytes: importing under one is checked against its pinned sha256.
    """
    candidate = Path(name_or_path).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.is_file():
        return None
    entry = catalogue().get(name_or_path)
    if entry is None or entry.kind != "model" or entry.labels != "coco":
        return None
    from safewatch.detect.coco import COCO_CLASSES

    return COCO_CLASSES


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
                fetched_sha256=str(record.get("fetched_sha256", "")),
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
            "fetched_sha256": m.fetched,
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


INDEX_LOCK = ".index.lock"
"""Lock file beside the index, so every process sharing the cache folder finds it."""


def _record(cache: Path, model: CachedModel) -> None:
    """Add or replace one entry of the index.

    Read-modify-write under an exclusive ``flock`` on a lock file in the cache folder: scaled
    analyzers (deploy/compose.yaml) share the models volume and pull at start-up, and without
    the lock two of them recording different names at once each wrote back the index they had
    read, losing the other's entry. The lock is in the folder itself (not the temporary folder)
    because those processes are in different containers; the index is replaced atomically, so
    readers need no lock.
    """
    path = cache / INDEX_LOCK
    try:
        handle = path.open("a")
    except OSError as exc:
        raise ModelError(f"cannot lock the model cache index ({path}): {exc}") from exc
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks (NFSv3 without lockd: ENOLCK)
            log.warning(
                "the model cache %s cannot be locked (%s): its index is updated unlocked, so "
                "two processes pulling at the same moment may lose an entry (pulled again at "
                "the next start)",
                cache,
                exc.strerror or exc,
            )
            locked = False
        else:
            locked = True
        try:
            models = _read_index(cache)
            models[model.name] = model
            _write_index(cache, models)
        finally:
            if locked:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
    for name, entry in entries.items():
        if entry.url.startswith(PACKAGED_SCHEME):
            # Shipped inside safewatch, never in the cache: it is there all the same. A damaged
            # installation lists as not cached; pull says why.
            with contextlib.suppress(ModelError):
                cached[name] = _packaged(name, entry)
    rows = [ModelListing(name, entry, cached.get(name)) for name, entry in entries.items()]
    rows += [ModelListing(n, None, m) for n, m in sorted(cached.items()) if n not in entries]
    return rows


def pull(
    name: str,
    *,
    cache: Path | None = None,
    url: str | None = None,
    mirror: str | None = None,
    progress: ProgressCallback | None = None,
    on_step: Callable[[str], None] | None = None,
    force: bool = False,
    timeout: float = 60.0,
) -> PullResult:
    """Download a catalogue entry into the cache, verify its sha256 and prepare it.

    Args:
        name: Catalogue name (see :func:`catalogue`).
        cache: Cache folder; default :func:`cache_dir`.
        url: Download from here (checked against the upstream checksum) instead of the
            catalogue URL or the mirror.
        mirror: Base URL or folder to fetch from instead of the internet; default
            ``$SAFEWATCH_MIRROR`` (see :mod:`safewatch.detect.fetching`).
        progress: Called as bytes arrive.
        on_step: Told, in words, about a conversion step before it runs (it can take seconds).
        force: Download again even when an intact copy is cached.
        timeout: Seconds to wait for the server on connect and on each read.

    Raises:
        ModelError: Unknown name, unreachable server, HTTP error, size or checksum mismatch (the
            partial file is deleted), a failed conversion, or an unwritable cache.
    """
    entries = catalogue()
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(entries)
        raise ModelError(f"no model {name!r} in the catalogue (known: {known})")
    if entry.url.startswith(PACKAGED_SCHEME):
        return PullResult(_packaged(name, entry), downloaded=False, checksum="packaged")
    folder = _ensure_cache(cache or cache_dir())
    recorded = _read_index(folder).get(name)
    trusted = recorded.fetched if recorded and recorded.source == "pull" else None
    expected = entry.sha256 or trusted
    if (
        not force
        and recorded is not None
        and recorded.path.is_file()
        and (entry.accepts(recorded.fetched) if entry.sha256 else recorded.fetched == trusted)
        and _sha256_file(recorded.path) == recorded.sha256
    ):
        return PullResult(recorded, downloaded=False, checksum="cached")
    if url is not None:
        found = candidates(url, expected, entry.size, (), None)
    else:
        chosen = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
        found = candidates(entry.url, expected, entry.size, entry.mirror, chosen)
    fetched = fetch_first(name, found, folder, timeout=timeout, progress=progress)
    model = _install(entry, fetched, folder, "pull", fetched.origin, on_step)
    return PullResult(model, downloaded=True, checksum="verified" if expected else "recorded")


def _packaged(name: str, entry: CatalogueEntry) -> CachedModel:
    """A packaged entry's shipped file, checked, as a cache record (it needs no cache)."""
    path = packaged_file(name, entry)
    digest = _sha256_file(path)
    return CachedModel(name, path, digest, path.stat().st_size, "package", entry.url, 0.0, digest)


def _intact(model: CachedModel) -> bool:
    """Whether a cached file still has the size and sha256 its index entry recorded."""
    try:
        size = model.path.stat().st_size
    except OSError:
        return False
    return size == model.size and _sha256_file(model.path) == model.sha256


def _install(
    entry: CatalogueEntry,
    fetched: Fetched,
    folder: Path,
    source: Literal["pull", "import"],
    origin: str,
    on_step: Callable[[str], None] | None,
) -> CachedModel:
    """Apply the entry's recorded step to a verified ``.part`` file, move it into place, index it.

    Shared by :func:`pull` and by :func:`import_model` under a catalogue name, so a pinned file
    copied in by hand ends up exactly as the download would have.
    """
    name = entry.name
    temp = fetched.path
    if entry.prepare is not None and not fetched.prepared:
        if on_step is not None:
            why = entry.prepare.get("why", "the recorded step")
            on_step(f"{name}: {entry.prepare['step']} ({why})")
        temp = prepare(name, entry.prepare, temp, folder, entry.suffix)
    target = folder / f"{name}{entry.suffix}"
    try:
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(f"cannot move the download into {target}: {exc}") from exc
    sha256 = fetched.sha256 if temp == fetched.path else _sha256_file(target)
    size = target.stat().st_size
    model = CachedModel(name, target, sha256, size, source, origin, time.time(), fetched.sha256)
    _record(folder, model)
    return model


def import_model(
    path: Path, *, name: str | None = None, cache: Path | None = None, force: bool = False
) -> CachedModel:
    """Copy a local ONNX file into the cache under ``name`` (default: the file's stem).

    The file is opened with ONNX Runtime first, so a truncated or non-ONNX file is refused here
    rather than when a camera starts. Importing the same bytes again is a no-op.

    A catalogue name (``yolox_nano``) takes only a file the catalogue pins for it (the upstream
    file, or one of the entry's mirror files, e.g. copied from a machine with internet), checked
    and prepared exactly as :func:`pull` would, so ``path: yolox_nano`` means the same bytes on
    every machine. Any other file under that name would either be replaced by the next pull or
    silently stand in for the pinned model, so it is refused: import it under a name of its own.

    Raises:
        ModelError: Missing or invalid file, bad name, a catalogue name and not its pinned file,
            a different file already cached under that name (pass ``force``), or an unwritable
            cache.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise ModelError(f"no model file at {source}")
    details = info(source)
    name = name or source.stem
    _check_name(name)
    entry = catalogue().get(name)
    if entry is not None:
        return _import_pinned(entry, source, details.sha256, cache or cache_dir(), force)
    folder = _ensure_cache(cache or cache_dir())
    existing = _read_index(folder).get(name)
    if existing is not None and existing.path.exists():
        if existing.sha256 == details.sha256:
            if _intact(existing):
                return existing
            # else: the same model over a truncated or damaged copy: copy it again.
        elif not force:
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
        name,
        target,
        details.sha256,
        details.size,
        "import",
        str(source.resolve()),
        time.time(),
        details.sha256,
    )
    _record(folder, model)
    return model


def _import_pinned(
    entry: CatalogueEntry, source: Path, sha256: str, cache: Path, force: bool
) -> CachedModel:
    """Import ``source`` under catalogue name ``entry.name``: only a file the entry pins."""
    name = entry.name
    other_name = (
        f"import it under another name (`--name my_{name}`) and point the site's `path` at that"
    )
    if entry.url.startswith(PACKAGED_SCHEME):
        raise ModelError(f"{name!r} ships with safewatch and cannot be replaced; {other_name}")
    pins = [Candidate(str(source), entry.sha256, entry.size, False, False)] if entry.sha256 else []
    pins += [Candidate(str(source), m.sha256, m.size, m.prepared, False) for m in entry.mirror]
    pin = next((c for c in pins if c.sha256 == sha256), None)
    if pin is None:
        pinned = ", ".join(str(c.sha256) for c in pins) or "none"
        raise ModelError(
            f"{name!r} is a catalogue name: it takes only the file the catalogue pins "
            f"({entry.url}; sha256 {pinned}), and {source} has sha256 {sha256}; {other_name}"
        )
    folder = _ensure_cache(cache)
    existing = _read_index(folder).get(name)
    if (
        not force
        and existing is not None
        and existing.path.is_file()
        and existing.fetched == sha256
        and _sha256_file(existing.path) == existing.sha256
    ):
        return existing  # the same pinned file, already in place
    fetched = fetch_first(name, [pin], folder, timeout=60.0, progress=None)
    return _install(entry, fetched, folder, "import", str(source.resolve()), None)


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
    cached = None
    if not path.is_file():
        cached = _named_file(str(path), cache or cache_dir())
        path = cached.path
    sha256 = _sha256_file(path)
    if cached is not None and sha256 != cached.sha256:
        raise _damaged(cached, f"has sha256 {sha256}, the index recorded {cached.sha256}")
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
        sha256=sha256,
        inputs=_tensors(session.get_inputs()),
        outputs=_tensors(session.get_outputs()),
        producer=str(meta.producer_name),
        metadata={str(k): str(v) for k, v in meta.custom_metadata_map.items()},
    )


def _named_file(name: str, cache: Path) -> CachedModel:
    """The file ``models info NAME`` reads: shipped in the package, or cached at its size.

    Raises:
        ModelError: Not cached (a catalogue name says how to pull it), or the cached copy is
            missing or truncated (says how to get it again).
    """
    entry = catalogue().get(name)
    if entry is not None and entry.url.startswith(PACKAGED_SCHEME):
        return _packaged(name, entry)
    cached = _read_index(cache).get(name)
    if cached is None:
        if entry is not None:
            raise ModelError(
                f"{entry.kind} {name!r} is in the catalogue but not in the cache {cache} yet: run "
                f"`safewatch models pull {name}`"
            )
        raise ModelError(f"no model file at {name}")
    size = cached.path.stat().st_size if cached.path.is_file() else None
    if size != cached.size:
        found = "is missing" if size is None else f"has {size} bytes"
        raise _damaged(cached, f"{found}, the index recorded {cached.size}")
    return cached


def _damaged(cached: CachedModel, problem: str) -> ModelError:
    """A cached copy that is not what its index entry recorded, and how to get it again."""
    name = cached.name
    if name in catalogue():
        again = f"run `safewatch models pull {name}`"
    else:
        again = f"import it again: `safewatch models import {cached.origin} --name {name}`"
    return ModelError(
        f"the cached copy of {name!r} ({cached.path}) {problem}: it is truncated or damaged; "
        f"{again}"
    )


PACKAGED_SCHEME = "package:"
"""URL scheme of a catalogue entry shipped inside the package (``package:<path in safewatch>``)."""


def packaged_file(name: str, entry: CatalogueEntry) -> Path:
    """The file of a model shipped inside safewatch, checked against the entry's pinned sha256.

    Models this project trains (the ~0.1 MB head classifier) have no upstream release to download
    from, so they ship in the package; the checksum still guards against a damaged installation.

    Raises:
        ModelError: The file is missing or does not match its checksum.
    """
    from importlib import resources

    path = Path(str(resources.files("safewatch").joinpath(entry.url[len(PACKAGED_SCHEME) :])))
    if not path.is_file():
        raise ModelError(f"the packaged model {name!r} is missing at {path}")
    digest = _sha256_file(path)
    if entry.sha256 is not None and digest != entry.sha256:
        raise ModelError(
            f"the packaged model {name!r} at {path} has sha256 {digest}, the catalogue pins "
            f"{entry.sha256}: the installation is damaged"
        )
    return path


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
    entries = catalogue()
    entry = entries.get(name_or_path)
    if entry is not None and entry.url.startswith(PACKAGED_SCHEME):
        return packaged_file(name_or_path, entry)
    folder = cache or cache_dir()
    cached = _read_index(folder).get(name_or_path)
    if cached is not None and cached.path.is_file():
        return cached.path
    if entry is not None and entry.kind == "model":
        raise ModelError(
            f"model {name_or_path!r} is not in the cache {folder} yet: run "
            f"`safewatch models pull {name_or_path}` (downloads {entry.url}, or from "
            f"${MIRROR_ENV}), or copy that file here by other means and run "
            f"`safewatch models import /path/to/file.onnx --name {name_or_path}`"
        )
    known = ", ".join(n for n, e in entries.items() if e.kind == "model")
    raise ModelError(
        f"model {name_or_path!r} not found: no file at {candidate}, and it is neither a catalogue "
        f"name ({known}) nor an imported model. Get one with `safewatch models pull yolox_nano` "
        "(needs internet or a mirror) or `safewatch models import /path/to/file.onnx`"
    )


def resolve_video(source: str, base_dir: Path, *, cache: Path | None = None) -> Path | None:
    """The cached file of a catalogue video named as a camera's ``source`` or an audit's video.

    Returns ``None`` when ``source`` is not a catalogue video name, or a file of that name exists
    beside the site file (a path always wins over a name).

    Raises:
        ModelError: A catalogue video not downloaded yet; the message says how to get it.
    """
    entry = catalogue().get(source)
    if entry is None or entry.kind != "video" or (base_dir / source).exists():
        return None
    folder = cache or cache_dir()
    cached = _read_index(folder).get(source)
    if cached is not None and cached.path.is_file():
        return cached.path
    raise ModelError(
        f"video {source!r} is not in the cache {folder} yet: run `safewatch models pull {source}` "
        f"(downloads {entry.url}, or from ${MIRROR_ENV})"
    )
