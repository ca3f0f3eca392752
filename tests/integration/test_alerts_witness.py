"""The chain head leaves the site through the alert channels, and ``safewatch verify --witness``
takes what a mailbox or webhook receiver kept back (issue 13).

Someone who controls the server can cut the newest chain entries off, set the head back and
remove the evidence store's witness too: ``verify`` alone then finds nothing. A witness alert
delivered to a real SMTP server and a real webhook receiver is out of their reach.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alerts_rig import AlertRig
from backtest_support import safewatch
from sqlalchemy import delete, text

from alert_servers import wait_until
from safewatch.incidents.witness import LATEST_KEY, WitnessWriter, parse_witness
from safewatch.storage import ChainEntryRow
from safewatch.storage.hash_chain import read_head

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[AlertRig]:
    rig = AlertRig(
        tmp_path / "site",
        ["mail", "hook"],
        alerts={"witness": {"channels": ["mail", "hook"], "every": "1h"}},
    )
    yield rig
    rig.close()


def test_witness_alerts_reach_a_mailbox_and_a_webhook_and_verify_takes_them_back(
    rig: AlertRig, tmp_path: Path
) -> None:
    assert rig.smtp is not None and rig.hook is not None
    rig.incident(4)
    rig.incident(5)
    settled = wait_until(lambda: rig.service.outbox.counts().get("delivered", 0) >= 4, 20)
    assert settled, rig.service.outbox.counts()
    store = rig.storage.evidence.backend
    writer = WitnessWriter(store, rig.storage.engine, notify=rig.service.witness)
    witness = writer.write_now()
    assert witness is not None

    def hooked() -> list[dict[str, object]]:
        return [r.json() for r in rig.hook.accepted() if r.json()["event"] == "witness"]  # type: ignore[union-attr]

    def mailed() -> list[bytes]:
        return [
            m.message.as_bytes()
            for m in rig.smtp.received()  # type: ignore[union-attr]
            if "chain witness" in str(m.message["Subject"])
        ]

    assert wait_until(lambda: hooked() and mailed(), 20)
    (body,) = hooked()
    assert body["witness"] == {
        "seq": witness.seq,
        "hash": witness.hash,
        "at": witness.at,
        "time": witness.when,
    }
    (mail,) = mailed()
    assert parse_witness(mail) == parse_witness(store.read_bytes(LATEST_KEY)) == witness

    # at most one per `every`: a moved head a moment later is witnessed in the store only
    rig.incident(6)
    assert rig.service.witness(writer.write_now() or witness) == 0

    saved_hook = tmp_path / "witness.json"
    saved_hook.write_bytes(json.dumps(body).encode())
    saved_mail = tmp_path / "witness.eml"
    saved_mail.write_bytes(mail)
    site = str(rig.site_path)
    ok = safewatch("verify", "-c", site, "--witness", saved_hook, "--witness", saved_mail)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"witness: entry {witness.seq} of {witness.when} in {saved_mail}" in ok.stdout

    # The attacker cuts the chain back to before the witnessed entry, sets the head back and
    # removes the store's witnesses: verify alone is satisfied ...
    engine = rig.storage.engine
    cut = witness.seq
    with engine.begin() as connection:
        previous = connection.execute(
            text("SELECT hash FROM chain_entries WHERE seq = :s"), {"s": cut - 1}
        ).scalar_one()
        connection.execute(delete(ChainEntryRow).where(ChainEntryRow.seq >= cut))
        # ... and the incidents only the cut entries vouched for
        connection.execute(
            text(
                "DELETE FROM incidents WHERE id NOT IN (SELECT incident_id FROM chain_entries "
                "WHERE incident_id IS NOT NULL)"
            )
        )
        connection.execute(
            text("UPDATE chain_head SET seq = :s, hash = :h"), {"s": cut - 1, "h": previous}
        )
    for info in list(store.list("chain-witness/")):
        store.delete(info.key)
    assert read_head(engine) == (cut - 1, previous)
    alone = safewatch("verify", "-c", site, "--no-evidence")
    # ... but not with a witness the mailbox or the webhook receiver kept
    for kept in (saved_hook, saved_mail):
        caught = safewatch("verify", "-c", site, "--no-evidence", "--witness", kept)
        assert caught.returncode == 1, caught.stdout
        assert f"the chain witness of {witness.when} in {kept} saw entry {cut}" in caught.stderr
        assert "were cut off the end" in caught.stderr
    assert alone.returncode == 0, alone.stdout + alone.stderr


def test_a_file_without_a_witness_is_a_clear_error(rig: AlertRig, tmp_path: Path) -> None:
    other = tmp_path / "note.txt"
    other.write_text("no witness here\n")
    result = safewatch("verify", "-c", str(rig.site_path), "--witness", other)
    assert result.returncode == 2
    assert f"--witness {other}: no chain witness found" in result.stderr
