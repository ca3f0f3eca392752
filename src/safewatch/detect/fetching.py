"""Where a catalogue file is fetched from, how its bytes are checked, and how it is prepared.

A catalogue entry names one public upstream URL with its sha256. A mirror (``$SAFEWATCH_MIRROR``:
an ``http(s)://`` base URL or a local folder) replaces the internet for CI and air-gapped plants.
A mirror is tried, in order, for:

1. the upstream file under its own name (``<mirror>/yolox_nano.onnx``): a flat copy of upstream;
2. each of the entry's ``mirror`` files (``<mirror>/models/yolox_nano_coco.onnx``): another file
   of the same model with *its own* pinned sha256, e.g. a re-export, or a copy already prepared
   (``prepared: true``: the entry's conversion step has been applied to it already).

Every candidate is checked against the checksum pinned for that candidate, so a mirror can serve
only bytes the catalogue names; a file a mirror lacks (404, absent) moves on to the next one. The
team's shared asset folder is laid out so that pointing the mirror at it serves every entry.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from safewatch.errors import ModelError, SafewatchError

__all__ = [
    "MIRROR_ENV",
    "Candidate",
    "Fetched",
    "MirrorFile",
    "ProgressCallback",
    "candidates",
    "fetch_first",
    "prepare",
]

MIRROR_ENV = "SAFEWATCH_MIRROR"
_CHUNK = 1 << 16

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes received, total bytes or ``None`` when the server does not say)."""


@dataclass(frozen=True, slots=True)
class MirrorFile:
    """Another file a mirror may serve for an entry, with its own pinned checksum.

    Attributes:
        path: Path below the mirror's base (``models/yolox_nano_coco.onnx``).
        sha256: Its digest; anything else is refused.
        size: Bytes, when known.
        prepared: The entry's conversion step was applied to it already (skip it).
        note: What this file is, for ``models list`` and the docs.
    """

    path: str
    sha256: str
    size: int | None = None
    prepared: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One place to try: a URL or a local file, and what its bytes must be."""

    location: str
    sha256: str | None
    size: int | None
    prepared: bool
    optional: bool  # a mirror may lack it: try the next candidate


@dataclass(frozen=True, slots=True)
class Fetched:
    """A downloaded, verified ``.part`` file and where it came from."""

    path: Path
    origin: str
    sha256: str
    size: int
    prepared: bool


def candidates(
    url: str,
    sha256: str | None,
    size: int | None,
    mirror_files: tuple[MirrorFile, ...],
    mirror: str | None,
) -> list[Candidate]:
    """Places to fetch an entry from, in order: the mirror's files, else the upstream URL."""
    if not mirror:
        return [Candidate(url, sha256, size, prepared=False, optional=False)]
    base = mirror.rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = str(Path(base.removeprefix("file://")).expanduser())
    found = [Candidate(f"{base}/{url.rsplit('/', 1)[-1]}", sha256, size, False, True)]
    for m in mirror_files:
        found.append(Candidate(f"{base}/{m.path}", m.sha256, m.size, m.prepared, optional=True))
    return found


class _Missing(Exception):
    """The mirror does not have this candidate."""


@contextmanager
def _open(location: str, timeout: float) -> Iterator[tuple[IO[bytes], int | None]]:
    if not location.startswith(("http://", "https://")):
        path = Path(location)
        if not path.is_file():
            raise _Missing(location)
        with path.open("rb") as handle:
            yield handle, path.stat().st_size
        return
    request = urllib.request.Request(location, headers={"User-Agent": "safewatch-catalogue"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise _Missing(location) from exc
        raise
    with response:
        length = response.headers.get("Content-Length")
        yield response, int(length) if length and length.isdigit() else None


def _copy(
    location: str, handle: IO[bytes], timeout: float, progress: ProgressCallback | None
) -> tuple[str, int]:
    """Copy ``location`` into ``handle`` while hashing it; return (sha256, bytes)."""
    digest = hashlib.sha256()
    done = 0
    with _open(location, timeout) as (body, total):
        while chunk := body.read(_CHUNK):
            handle.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total is not None and done != total:
        # urllib returns a short body without complaint when the connection drops.
        raise ValueError(f"received {done} of {total} bytes")
    return digest.hexdigest(), done


def _fetch_one(
    name: str, candidate: Candidate, folder: Path, timeout: float, progress: ProgressCallback | None
) -> Fetched:
    """Download one candidate into a ``.part`` file in ``folder`` and verify it."""
    where = candidate.location
    fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            sha256, size = _copy(where, handle, timeout, progress)
            handle.flush()
            os.fsync(handle.fileno())
    except _Missing:
        temp.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(
            f"download of {name} failed: HTTP {exc.code} {exc.reason} from {where}"
        ) from exc
    except urllib.error.URLError as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(
            f"cannot reach {where} to download {name} ({exc.reason}). Without internet, point "
            f"${MIRROR_ENV} at a folder or server holding a copy, or copy the file here by other "
            f"means and run `safewatch models import /path/to/file --name {name}` (it must be "
            "that file or a mirror file the catalogue pins: the same checks as a download)"
        ) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        temp.unlink(missing_ok=True)
        raise ModelError(f"download of {name} from {where} was interrupted: {exc}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    problem = None
    if candidate.size is not None and candidate.sha256 is not None and size != candidate.size:
        problem = f"size mismatch for {name}: expected {candidate.size} bytes, got {size}"
    elif candidate.sha256 is not None and sha256 != candidate.sha256:
        problem = f"checksum mismatch for {name}: expected sha256 {candidate.sha256}, got {sha256}"
    if problem is not None:
        temp.unlink(missing_ok=True)
        raise ModelError(f"{problem} (from {where}); the partial download was deleted")
    return Fetched(temp, where, sha256, size, candidate.prepared)


def fetch_first(
    name: str,
    found: list[Candidate],
    folder: Path,
    *,
    timeout: float,
    progress: ProgressCallback | None,
) -> Fetched:
    """Fetch the first candidate that exists; a checksum mismatch stops the search.

    Raises:
        ModelError: Unreachable, HTTP error, wrong size or checksum, or no candidate present.
    """
    for candidate in found:
        try:
            return _fetch_one(name, candidate, folder, timeout, progress)
        except _Missing:
            if not candidate.optional:
                raise ModelError(
                    f"download of {name} failed: HTTP 404 Not Found from {candidate.location}"
                ) from None
    tried = ", ".join(c.location for c in found)
    raise ModelError(f"the mirror has no copy of {name} (tried {tried})")


def prepare(name: str, step: Mapping[str, Any], source: Path, folder: Path, suffix: str) -> Path:
    """Apply an entry's recorded conversion step; return the new ``.part`` file (source removed).

    Raises:
        ModelError: Unknown step, or the step failed (a file that is not what the step expects).
    """
    fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=f".prepared{suffix}", dir=folder)
    os.close(fd)
    target = Path(temp_name)
    kind = step.get("step")
    try:
        if kind == "strip_output_qdq":
            from safewatch.detect.repair import strip_output_qdq

            strip_output_qdq(source, target, output=str(step["output"]))
        elif kind == "trim_video":
            from safewatch.ingest.video_trim import trim_video

            trim_video(source, target, frames=int(step["frames"]))
        else:
            raise ModelError(f"catalogue entry {name}: unknown preparation step {kind!r}")
    except SafewatchError as exc:
        target.unlink(missing_ok=True)
        raise ModelError(f"preparing {name} failed: {exc}") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        source.unlink(missing_ok=True)
    return target
