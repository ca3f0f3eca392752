"""Sealed originals: AES-GCM round trip, clear key errors, tamper detection, logged reveal."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from safewatch.errors import ConfigError, NotFound, StorageError
from safewatch.incidents import EvidenceStore
from safewatch.incidents.sealed import (
    REVEAL_LOG,
    EvidenceKey,
    EvidenceKeyError,
    generate_key,
    reveal,
    reveal_records,
    seal,
    unseal,
)

AT = 1_700_000_000.0
ENV = "SAFEWATCH_EVIDENCE_KEY"


def key(seed: int = 1) -> EvidenceKey:
    return EvidenceKey(bytes([seed]) * 32, f"${ENV}")


def test_round_trip_and_ciphertext_hides_the_plaintext() -> None:
    data = b"\xff\xd8 a JPEG of a face " * 100
    sealed = seal(data, key(), context="cam/2023-11-14/a.orig.jpg.sealed")
    assert b"a JPEG of a face" not in sealed
    assert unseal(sealed, key(), context="cam/2023-11-14/a.orig.jpg.sealed") == data
    # A fresh nonce each time: sealing twice never gives the same bytes.
    assert seal(data, key(), context="x") != seal(data, key(), context="x")


def test_wrong_key_names_both_fingerprints() -> None:
    sealed = seal(b"data", key(1), context="a.sealed")
    with pytest.raises(EvidenceKeyError) as info:
        unseal(sealed, key(2), context="a.sealed")
    message = str(info.value)
    assert key(1).fingerprint in message and key(2).fingerprint in message
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("damage", ["flip", "truncate", "moved"])
def test_altered_truncated_or_moved_files_refuse_to_open(damage: str) -> None:
    sealed = bytearray(seal(b"original pixels" * 10, key(), context="cam/a.orig.jpg.sealed"))
    context = "cam/a.orig.jpg.sealed"
    if damage == "flip":
        sealed[-5] ^= 0x01
    elif damage == "truncate":
        del sealed[-3:]
    else:
        context = "cam/b.orig.jpg.sealed"
    with pytest.raises(StorageError, match="altered, truncated or moved"):
        unseal(bytes(sealed), key(), context=context)


def test_not_a_sealed_file() -> None:
    with pytest.raises(StorageError, match="not a sealed safewatch evidence file"):
        unseal(b"\xff\xd8 plain jpeg bytes, long enough to have a header", key(), context="x")


def test_key_from_env_errors_are_specific() -> None:
    generated = generate_key()
    assert EvidenceKey.from_env(ENV, {ENV: generated}).secret == base64.b64decode(generated)
    with pytest.raises(EvidenceKeyError, match=r"\$SAFEWATCH_EVIDENCE_KEY is not set"):
        EvidenceKey.from_env(ENV, {})
    with pytest.raises(EvidenceKeyError, match="not valid base64"):
        EvidenceKey.from_env(ENV, {ENV: "not base64!!"})
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(EvidenceKeyError, match="must decode to 32 bytes, got 16"):
        EvidenceKey.from_env(ENV, {ENV: short})
    assert repr(key()) == "EvidenceKey(source='$SAFEWATCH_EVIDENCE_KEY')"  # never the secret


def sealed_still(store: EvidenceStore, data: bytes = b"ORIGINAL-STILL") -> str:
    relative = store.key_for("inc1", camera_id="cam", at=AT, suffix=".orig.jpg.sealed")
    sealed = seal(data, key(), context=relative)
    store.write_bytes("inc1", sealed, camera_id="cam", at=AT, suffix=".orig.jpg.sealed")
    return relative


def test_reveal_logs_who_and_why_before_writing_the_plaintext(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    relative = sealed_still(store)
    out = reveal(
        store,
        relative,
        key=key(),
        actor="inspector.jones",
        reason="case 2023-118",
        out_dir=tmp_path / "out",
        clock=lambda: AT,
    )
    assert out == tmp_path / "out" / "inc1.orig.jpg"
    assert out.read_bytes() == b"ORIGINAL-STILL"
    assert out.stat().st_mode & 0o077 == 0, "the plaintext must be private to its owner"
    (record,) = reveal_records(tmp_path / "evidence" / REVEAL_LOG)
    assert record["actor"] == "inspector.jones"
    assert record["reason"] == "case 2023-118"
    assert record["file"] == relative
    assert record["outcome"] == "revealed"
    assert record["key"] == key().fingerprint
    assert record["at"].startswith("2023-11-14T22:13:20")
    assert len(record["sha256"]) == 64


def test_refused_reveals_are_logged_too(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    relative = sealed_still(store)
    with pytest.raises(EvidenceKeyError):
        reveal(store, relative, key=key(9), actor="mallory", reason="curious", out_dir=tmp_path)
    with pytest.raises(NotFound):
        reveal(store, "cam/x.orig.jpg.sealed", key=key(), actor="a", reason="b")
    records = reveal_records(tmp_path / "evidence" / REVEAL_LOG)
    assert [r["actor"] for r in records] == ["mallory", "a"]
    assert all(r["outcome"].startswith("refused") for r in records)
    assert not list(tmp_path.glob("*.orig.jpg")), "nothing may be revealed on a refusal"


def test_reveal_needs_a_reason_and_a_sealed_file(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    relative = sealed_still(store)
    with pytest.raises(ValueError, match="reason is required"):
        reveal(store, relative, key=key(), actor="a", reason="  ")
    with pytest.raises(ValueError, match="not a sealed original"):
        reveal(store, "cam/2023-11-14/inc1.jpg", key=key(), actor="a", reason="r")


def test_no_plaintext_when_the_log_cannot_be_written(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    relative = sealed_still(store)
    blocked = tmp_path / "log-is-a-folder"
    blocked.mkdir()
    with pytest.raises(StorageError, match="cannot write the reveal log"):
        reveal(
            store,
            relative,
            key=key(),
            actor="a",
            reason="r",
            out_dir=tmp_path / "out",
            log_path=blocked,
        )
    assert not (tmp_path / "out").exists()


def test_reveal_log_lines_are_json(tmp_path: Path) -> None:
    log = tmp_path / REVEAL_LOG
    log.write_text(json.dumps({"a": 1}) + "\n\nnot json\n")
    with pytest.raises(StorageError, match=r"reveal-log.jsonl:3: not a JSON record"):
        reveal_records(log)
    assert reveal_records(tmp_path / "missing.jsonl") == []
