"""Encrypted ("sealed") originals of evidence, and the one logged way to open them.

Evidence is shown with heads hidden (:mod:`safewatch.incidents.privacy`). An investigation may need
the unblurred picture, so a site can keep the originals too, but sealed: AES-256-GCM with a key
that lives only in the environment (never in the site file, the database or the evidence folder).
GCM authenticates as well as encrypts, so a sealed file that was altered, or moved to another
incident's name (its path is bound in as associated data), refuses to open.

File layout: ``MAGIC`` (8 bytes), the key's fingerprint (8 bytes; tells "wrong key" from
"tampered"), a random 96-bit nonce, then ciphertext and tag.

Opening one is :func:`reveal`: it needs a named actor and a reason, appends a record to
``reveal-log.jsonl`` in the evidence folder (and the log) *before* it writes the plaintext, and
records refusals too. If the record cannot be written, nothing is revealed.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safewatch.errors import ConfigError, SafewatchError, StorageError
from safewatch.incidents.evidence import EvidenceStore

__all__ = [
    "KEY_BYTES",
    "REVEAL_LOG",
    "EvidenceKey",
    "EvidenceKeyError",
    "generate_key",
    "log_refusal",
    "reveal",
    "reveal_log_path",
    "reveal_records",
    "seal",
    "unseal",
]

_log = logging.getLogger(__name__)

KEY_BYTES = 32
"""AES-256."""

MAGIC = b"SWSEAL1\x00"
_FINGERPRINT = 8
_NONCE = 12
_HEADER = len(MAGIC) + _FINGERPRINT + _NONCE

REVEAL_LOG = "reveal-log.jsonl"
"""Audit trail of reveals, one JSON object per line, in the evidence folder's root."""


class EvidenceKeyError(ConfigError):
    """The originals' key is missing or malformed, or is not the key a file was sealed with."""


def _fingerprint(key: bytes) -> bytes:
    return hashlib.sha256(b"safewatch evidence key\x00" + key).digest()[:_FINGERPRINT]


@dataclass(frozen=True, slots=True)
class EvidenceKey:
    """An AES-256 key for sealed originals.

    Attributes:
        secret: The 32 key bytes (left out of ``repr``).
        source: Where it came from, for messages (``$SAFEWATCH_EVIDENCE_KEY``).
    """

    secret: bytes = field(repr=False)
    source: str = "key"

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise EvidenceKeyError(
                f"{self.source} must decode to {KEY_BYTES} bytes, got {len(self.secret)}"
            )

    @property
    def fingerprint(self) -> str:
        """A short, non-secret id of the key (hex), safe to log and to compare."""
        return _fingerprint(self.secret).hex()

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> EvidenceKey:
        """Read a base64 key from environment variable ``name``.

        Raises:
            EvidenceKeyError: The variable is unset, empty, not base64, or not 32 bytes.
        """
        env = os.environ if environ is None else environ
        source = f"${name}"
        text = env.get(name, "").strip()
        if not text:
            raise EvidenceKeyError(
                f"{source} is not set: evidence.keep_originals needs a 32-byte key, base64 "
                "(make one with `safewatch evidence new-key`)"
            )
        try:
            secret = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EvidenceKeyError(f"{source} is not valid base64: {exc}") from exc
        return cls(secret, source)


def generate_key() -> str:
    """A new random key, base64, for ``SAFEWATCH_EVIDENCE_KEY``."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def seal(data: bytes, key: EvidenceKey, *, context: str) -> bytes:
    """Encrypt and authenticate ``data``, bound to ``context`` (the sealed file's relative path)."""
    nonce = secrets.token_bytes(_NONCE)
    sealed = AESGCM(key.secret).encrypt(nonce, data, context.encode())
    return MAGIC + _fingerprint(key.secret) + nonce + sealed


def unseal(blob: bytes, key: EvidenceKey, *, context: str) -> bytes:
    """Decrypt what :func:`seal` produced for the same ``context``.

    Raises:
        EvidenceKeyError: The file was sealed with another key.
        StorageError: Not a sealed file, or altered, truncated or renamed since it was sealed.
    """
    if len(blob) < _HEADER + 16 or not blob.startswith(MAGIC):
        raise StorageError(f"{context} is not a sealed safewatch evidence file")
    stored = blob[len(MAGIC) : len(MAGIC) + _FINGERPRINT]
    if stored != _fingerprint(key.secret):
        raise EvidenceKeyError(
            f"{context} was sealed with key {stored.hex()}, but {key.source} is key "
            f"{key.fingerprint}"
        )
    nonce = blob[len(MAGIC) + _FINGERPRINT : _HEADER]
    try:
        return AESGCM(key.secret).decrypt(nonce, blob[_HEADER:], context.encode())
    except InvalidTag as exc:
        raise StorageError(
            f"{context} fails authentication: it was altered, truncated or moved since it was "
            "sealed"
        ) from exc


def reveal_log_path(store: EvidenceStore) -> Path:
    """The reveal log of a store in a local folder: ``<evidence folder>/reveal-log.jsonl``.

    Raises:
        StorageError: The evidence is not in a local folder (an S3 store has no place to append
            to): pass ``log_path`` to :func:`reveal` instead.
    """
    return store.root / REVEAL_LOG


def _append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one line to the reveal log and flush it to disk (the record must outlive a crash)."""
    line = json.dumps(record, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot write the reveal log {path}: {exc.strerror or exc}") from exc


def _os_user() -> str:
    """The OS user's name, or ``uid:<n>`` when it has none: ``getpass.getuser()`` raises (a
    ``KeyError`` before Python 3.13, ``OSError`` since) for a uid without a passwd entry and no
    ``USER``/``LOGNAME`` (a container's arbitrary uid), which made ``evidence reveal`` without
    ``--actor`` a traceback."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _reveal_record(
    subject: str, *, key: EvidenceKey, actor: str | None, reason: str, now: float
) -> dict[str, Any]:
    """The reveal log record of a request (before its outcome).

    Raises:
        ValueError: ``reason`` or ``actor`` is empty.
    """
    who = (actor if actor is not None else _os_user()).strip()
    why = reason.strip()
    if not why:
        raise ValueError("a reason is required to reveal an original")
    if not who:
        raise ValueError("an actor is required to reveal an original")
    return {
        "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "action": "reveal",
        "actor": who,
        "reason": why,
        "file": subject,
        "key": key.fingerprint,
    }


def log_refusal(
    log_path: Path,
    subject: str,
    error: Exception,
    *,
    key: EvidenceKey,
    actor: str | None = None,
    reason: str,
    clock: Callable[[], float] = time.time,
) -> None:
    """Log a reveal refused before any sealed file could be named or read (an unknown incident,
    an incident without originals), as :func:`reveal` logs its own refusals: a request is on
    record whatever came of it.

    Args:
        log_path: The reveal log.
        subject: What was asked for (the incident id).
        error: Why it was refused.
        key: The key the request came with.
        actor: Who asked; default: the OS user running this.
        reason: Why they asked.
        clock: Wall clock for the record (injectable for tests).

    Raises:
        ValueError: ``reason`` or ``actor`` is empty (nothing to record).
        StorageError: The reveal log cannot be written.
    """
    record = _reveal_record(subject, key=key, actor=actor, reason=reason, now=clock())
    record["outcome"] = f"refused: {error}"
    _append_record(log_path, record)
    _log.warning("reveal of %s by %s refused: %s", subject, record["actor"], error)


def reveal(
    store: EvidenceStore,
    relative: str,
    *,
    key: EvidenceKey,
    actor: str | None = None,
    reason: str,
    out_dir: Path | None = None,
    log_path: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> Path:
    """Decrypt one sealed original to a private file, after logging who asked and why.

    Args:
        store: The evidence store holding the sealed file.
        relative: The sealed file's path relative to the store (ends in ``.sealed``).
        key: The originals' key.
        actor: Who reveals (a user name); default: the OS user running this.
        reason: Why (a case number, a request); required and recorded.
        out_dir: Folder for the plaintext, created private (0700) if missing; default: a new
            private temporary folder.
        log_path: The reveal log; default :func:`reveal_log_path` (local stores only).
        clock: Wall clock for the record (injectable for tests).

    Returns:
        The plaintext file (the original name without ``.sealed``). The caller deletes it.

    Raises:
        ValueError: ``reason`` or ``actor`` is empty, or ``relative`` is not a sealed file name.
        EvidenceKeyError: Wrong key (the refusal is logged too).
        NotFound: No such file (logged).
        StorageError: Altered or unreadable file, or the reveal log cannot be written (then
            nothing is revealed).
    """
    record = _reveal_record(relative, key=key, actor=actor, reason=reason, now=clock())
    name = PurePosixPath(relative)
    journal = log_path if log_path is not None else reveal_log_path(store)
    if name.suffix != ".sealed":
        raise ValueError(f"{relative!r} is not a sealed original (expected a .sealed file)")
    who = record["actor"]
    why = record["reason"]
    try:
        blob = store.read_bytes(relative)
    except SafewatchError as exc:
        record["outcome"] = f"refused: {exc}"
        _append_record(journal, record)
        raise
    record["sha256"] = hashlib.sha256(blob).hexdigest()
    try:
        plain = unseal(blob, key, context=relative)
    except (EvidenceKeyError, StorageError) as exc:
        record["outcome"] = f"refused: {exc}"
        _append_record(journal, record)
        _log.warning("reveal of %s by %s refused: %s", relative, who, exc)
        raise
    record["outcome"] = "revealed"
    _append_record(journal, record)
    _log.warning("evidence original %s revealed by %s: %s", relative, who, why)
    folder = out_dir if out_dir is not None else Path(tempfile.mkdtemp(prefix="safewatch-reveal-"))
    target = folder / name.with_suffix("").name
    try:
        # private like the default temporary folder (an existing folder is the caller's choice)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(plain)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


def reveal_records(path: Path) -> list[dict[str, Any]]:
    """Every record of the reveal log at ``path``, oldest first (empty if nothing was revealed).

    Raises:
        StorageError: The log exists but cannot be read or a line is not JSON.
    """
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot read the reveal log {path}: {exc.strerror or exc}") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise StorageError(f"{path}:{number}: not a JSON record ({exc.msg})") from exc
    return records
