"""Evidence store: layout, atomic writes, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from safewatch.errors import StorageError
from safewatch.incidents import EvidenceStore

AT = 1_700_000_000.0  # 2023-11-14 UTC


def image(value: int = 120) -> np.ndarray:
    return np.full((352, 640, 3), value, np.uint8)


def test_write_still_lays_out_by_camera_and_date(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    relative = store.write_still("abc123", image(), camera_id="line-2", at=AT)
    assert relative == "line-2/2023-11-14/abc123.jpg"
    path = store.path_of(relative)
    assert path == tmp_path / relative
    decoded = cv2.imread(str(path))
    assert decoded is not None and decoded.shape == (352, 640, 3)
    assert abs(int(decoded[10, 10, 0]) - 120) <= 2


def test_rewrite_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    first = store.write_still("abc", image(10), camera_id="c", at=AT)
    second = store.write_still("abc", image(200), camera_id="c", at=AT)
    assert first == second
    files = sorted(p.name for p in (tmp_path / "c" / "2023-11-14").iterdir())
    assert files == ["abc.jpg"]
    decoded = cv2.imread(str(tmp_path / first))
    assert decoded is not None and decoded[0, 0, 0] > 150


def test_failed_write_leaves_neither_still_nor_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EvidenceStore(tmp_path)

    def crash(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safewatch.storage.local_blobs.os.replace", crash)
    with pytest.raises(StorageError, match="No space left"):
        store.write_still("abc", image(), camera_id="c", at=AT)
    assert list((tmp_path / "c" / "2023-11-14").iterdir()) == []


def test_previous_still_survives_a_failed_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EvidenceStore(tmp_path)
    relative = store.write_still("abc", image(10), camera_id="c", at=AT)
    before = (tmp_path / relative).read_bytes()

    def crash(src: str, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("safewatch.storage.local_blobs.os.replace", crash)
    with pytest.raises(StorageError):
        store.write_still("abc", image(200), camera_id="c", at=AT)
    assert (tmp_path / relative).read_bytes() == before


def test_root_blocked_by_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "evidence").write_text("")
    store = EvidenceStore(tmp_path / "evidence")
    with pytest.raises(StorageError, match="cannot write evidence"):
        store.write_still("abc", image(), camera_id="c", at=AT)


def test_unsafe_ids_cannot_escape_the_root(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "ev")
    relative = store.write_still("../../x", image(), camera_id="../..", at=AT)
    assert store.path_of(relative).is_relative_to((tmp_path / "ev").resolve())
    with pytest.raises(StorageError, match="outside"):
        store.path_of("../../etc/passwd")
