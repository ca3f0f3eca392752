"""The chain head witnessed in the evidence store: written at start, when the head moves, and at
a clean stop; a store that fails is logged, never raised into the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from incident_factories import make_incident
from patience import poll
from safewatch.errors import StorageError
from safewatch.incidents.witness import (
    LATEST_KEY,
    ChainWitness,
    WitnessWriter,
    parse_witness,
    read_latest_witness,
)
from safewatch.storage import IncidentRepository, LocalBlobStore
from safewatch.storage.hash_chain import read_head

T0 = 1_700_000_000.0


def _open(repo: IncidentRepository, n: int) -> None:
    repo.upsert(make_incident(n, camera="yard", started_at=T0 + n, peak=0.8))


def test_writer_witnesses_the_head_at_start_and_at_stop(db_engine: Engine, tmp_path: Path) -> None:
    repo = IncidentRepository(db_engine)
    _open(repo, 1)
    store = LocalBlobStore(tmp_path / "evidence")
    seen: list[ChainWitness] = []
    writer = WitnessWriter(store, db_engine, interval=3600, notify=seen.append).start()
    # the first write happens on the writer's thread
    first = poll(lambda: read_latest_witness(store), 10, "the writer's first witness")
    assert first is not None and (first.seq, first.hash) == read_head(db_engine)
    _open(repo, 2)
    writer.stop()
    last = read_latest_witness(store)
    assert last is not None and (last.seq, last.hash) == read_head(db_engine)
    assert last.seq == first.seq + 1
    assert [w.seq for w in seen] == [first.seq, last.seq]
    history = sorted(info.key for info in store.list("chain-witness/") if info.key != LATEST_KEY)
    assert len(history) == 2 and history[-1].endswith(f"-{last.seq}.json")


def test_an_unchanged_head_is_not_witnessed_again(db_engine: Engine, tmp_path: Path) -> None:
    repo = IncidentRepository(db_engine)
    _open(repo, 1)
    store = LocalBlobStore(tmp_path / "evidence")
    writer = WitnessWriter(store, db_engine)
    assert writer.write_now() is not None
    assert writer.write_now() is None
    assert writer.write_now(force=True) is not None


def test_a_failing_store_is_logged_not_raised(
    db_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = IncidentRepository(db_engine)
    _open(repo, 1)

    class Broken(LocalBlobStore):
        def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:  # type: ignore[override]
            raise StorageError("disk full")

    writer = WitnessWriter(Broken(tmp_path / "evidence"), db_engine)
    assert writer.write_now() is None
    assert "cannot write the chain witness" in caplog.text and "disk full" in caplog.text


def test_a_damaged_latest_witness_is_a_storage_error(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "evidence")
    assert read_latest_witness(store) is None
    store.put_bytes(LATEST_KEY, b"{not json")
    with pytest.raises(StorageError, match="not a chain witness"):
        read_latest_witness(store)


WITNESS = ChainWitness(seq=42, hash="ab" * 32, at=1_796_549_095.8352728)


def test_a_witness_is_read_back_from_whatever_a_receiver_kept() -> None:
    from email.message import EmailMessage

    assert parse_witness(WITNESS.to_json()) == WITNESS  # a copy of latest.json
    hook = json.dumps({"version": 1, "event": "witness", "witness": json.loads(WITNESS.to_json())})
    assert parse_witness(hook.encode()) == WITNESS  # the webhook's body
    mail = EmailMessage()
    mail["Subject"] = "safewatch chain witness"
    # quoted-printable folds the long line with soft breaks: the decoded body is searched
    mail.set_content(f"Keep this.\n\n{WITNESS.line()}\n", cte="quoted-printable")
    raw = mail.as_bytes()
    assert WITNESS.line().encode() not in raw
    assert parse_witness(raw) == WITNESS
    older = ChainWitness(seq=7, hash="cd" * 32, at=1.0)
    text = f"forwarded:\n> {older.line()}\n{WITNESS.line()}\n"
    assert parse_witness(text.encode()) == WITNESS  # the last line wins
    with pytest.raises(ValueError, match="no chain witness found"):
        parse_witness(b"hello")
    with pytest.raises(ValueError, match="not a chain witness"):
        parse_witness(b'{"seq": "x"}')


def test_witness_channels_must_be_defined() -> None:
    from pydantic import ValidationError

    from safewatch.config.alerts import AlertsConfig

    hook = {"type": "webhook", "url": "https://example.org/h"}
    AlertsConfig.model_validate({"channels": {"hook": hook}, "witness": {"channels": ["hook"]}})
    with pytest.raises(ValidationError, match="witness names channel 'mail'"):
        AlertsConfig.model_validate({"channels": {"hook": hook}, "witness": {"channels": ["mail"]}})


def test_the_empty_chain_is_not_witnessed(db_engine: Engine, tmp_path: Path) -> None:
    """A fresh site's first start has no entry yet: its head (0, genesis) proves nothing, and a
    stored or sent witness of it made verify report entry 0 as deleted."""
    from safewatch.incidents.witness import write_witness

    store = LocalBlobStore(tmp_path / "evidence")
    seen: list[ChainWitness] = []
    writer = WitnessWriter(store, db_engine, notify=seen.append)
    assert writer.write_now() is None and writer.write_now(force=True) is None
    assert write_witness(store, db_engine) is None
    assert read_latest_witness(store) is None and not list(store.list("chain-witness/"))
    assert seen == []
    _open(IncidentRepository(db_engine), 1)
    assert writer.write_now() is not None and [w.seq for w in seen] == [read_head(db_engine)[0]]  # type: ignore[index]
