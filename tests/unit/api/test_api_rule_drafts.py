"""Rule drafts through the API: drafted by the site's model (a local replay server) or the
structured form, kept on the server, saved only by their operator, audited, reloaded."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api_support import RULES, add_users, client_for, login, write_site
from llm_replay import Recorded, ReplayServer, chat_completion, replay
from safewatch.api.dashboard import Dashboard
from safewatch.api.errors import ApiError
from safewatch.api.routes.rule_drafts import DraftStore
from safewatch.config.loader import load_site
from safewatch.incidents.site_storage import open_site_storage
from safewatch.llm.drafting import DraftResult
from safewatch.llm.guard import Change
from safewatch.storage import RuleDraftRow, create_engine_for

DWELL = """\
```yaml
version: 1
rules:
  - id: drop-zone-dwell
    kind: dwell
    description: Nobody stays in the drop zone for more than 30 seconds.
    zone: drop_zone
    max_time: 30s
```
Assumed the drop zone is the one drawn on the yard camera.
"""
DISABLE = """\
```yaml
rules:
  - {id: hardhat-required, kind: ppe, cameras: [yard], require: [hardhat], enabled: false}
  - id: drop-zone-dwell
    kind: dwell
    zone: drop_zone
    max_time: 30s
```
"""
ASK = "nobody stays in the drop zone for more than 30 seconds"

Clients = dict[str, tuple[TestClient, dict[str, str]]]


def _dashboard(folder: Path, llm: dict[str, Any] | None) -> tuple[Dashboard, Any]:
    site = load_site(write_site(folder, extra={"llm": llm} if llm else None))
    storage = open_site_storage(site)
    return Dashboard.create(lambda: site, folder / "rules", storage), storage


@pytest.fixture
def model() -> Iterator[ReplayServer]:
    scenarios = {
        "dwell": [Recorded(200, chat_completion(DWELL, model="test-model"))],
        "disable": [Recorded(200, chat_completion(DISABLE))],
    }
    with replay(scenarios) as server:
        yield server


def _clients(dashboard: Dashboard, client: TestClient) -> Clients:
    """One logged-in client per role (cookies are per client, so one app, three sessions)."""
    out = {}
    for role in ("viewer", "operator", "admin"):
        session = TestClient(client.app)
        session.__enter__()
        out[role] = (session, {"X-CSRF-Token": login(session, role)})
    return out


@pytest.fixture
def with_llm(tmp_path: Path, model: ReplayServer) -> Iterator[tuple[Clients, Dashboard, Path]]:
    dashboard, storage = _dashboard(tmp_path, {"base_url": model.base_url, "model": "dwell"})
    add_users(dashboard)
    with client_for(dashboard) as client:
        clients = _clients(dashboard, client)
        yield clients, dashboard, tmp_path / "rules"
        for session, _ in clients.values():
            session.__exit__(None, None, None)
    storage.close()


def _llm_model(dashboard: Dashboard, folder: Path, base_url: str, name: str) -> None:
    site = write_site(folder, extra={"llm": {"base_url": base_url, "model": name}})
    loaded = load_site(site)
    dashboard.site = lambda: loaded  # the site file was edited: the next request sees it


def test_setup_says_which_model_and_offers_the_sites_choices(
    with_llm: tuple[Clients, Dashboard, Path],
) -> None:
    clients, _, _ = with_llm
    client, _ = clients["viewer"]
    setup = client.get("/api/v1/rule-drafts/setup").json()
    assert (setup["llm"], setup["model"]) == (True, "dwell")
    assert setup["default_target"] == "drafts.yaml" and setup["files"] == ["yard.yaml"]
    assert setup["zones"] == ["drop_zone"] and setup["objects"] == ["person"]
    assert setup["cameras"] == ["yard", "dock"] and "zone_clear" in setup["kinds"]


def test_viewers_may_not_draft_or_save(with_llm: tuple[Clients, Dashboard, Path]) -> None:
    clients, _, _ = with_llm
    client, headers = clients["viewer"]
    drafted = client.post("/api/v1/rule-drafts", json={"request": ASK}, headers=headers)
    assert (drafted.status_code, drafted.json()["error"]) == (403, "forbidden")
    formed = client.post("/api/v1/rule-drafts/form", json={"rule": {}}, headers=headers)
    assert formed.status_code == 403
    saved = client.post("/api/v1/rule-drafts/" + "a" * 24 + "/save", headers=headers)
    assert saved.status_code == 403


def test_an_operator_drafts_reviews_and_saves(
    with_llm: tuple[Clients, Dashboard, Path], model: ReplayServer
) -> None:
    clients, dashboard, rules = with_llm
    client, headers = clients["operator"]
    drafted = client.post("/api/v1/rule-drafts", json={"request": ASK}, headers=headers)
    assert drafted.status_code == 200, drafted.text
    draft = drafted.json()
    assert draft["valid"] and draft["id"] and draft["rounds"] == 1
    assert draft["model"] == "test-model" and draft["target"] == "drafts.yaml"
    assert draft["changes"] == [
        {"kind": "rule", "id": "drop-zone-dwell", "action": "add", "disables": False}
    ]
    assert "+  - id: drop-zone-dwell\n" in draft["diff"]
    assert draft["explanation"][0].startswith("New rule: drop-zone-dwell (medium): on camera yard")
    assert draft["assumptions"] == "Assumed the drop zone is the one drawn on the yard camera."
    assert not (rules / "drafts.yaml").exists()
    assert "drop_zone" in model.bodies("dwell")[0]["messages"][1]["content"]

    saved = client.post(f"/api/v1/rule-drafts/{draft['id']}/save", headers=headers)
    assert saved.status_code == 200, saved.text
    assert saved.json()["file"] == "drafts.yaml"
    assert saved.json()["status"]["generation"] == 2
    listed = client.get("/api/v1/rules").json()
    assert "drop-zone-dwell" in [r["id"] for r in listed["rules"]]
    records, _ = dashboard.auth.audit_records(action="rules.draft_saved")
    (record,) = records
    assert (record.actor, record.subject, record.client) == (
        "operator",
        "drafts.yaml",
        "testclient",
    )
    assert record.detail["request"] == ASK and record.detail["source"] == "api"
    assert record.detail["result_yaml"] == draft["yaml"]

    again = client.post(f"/api/v1/rule-drafts/{draft['id']}/save", headers=headers)
    assert again.status_code == 404  # a draft is saved at most once


def test_only_the_drafting_user_can_save_a_draft(
    with_llm: tuple[Clients, Dashboard, Path],
) -> None:
    clients, _, rules = with_llm
    client, headers = clients["operator"]
    draft = client.post("/api/v1/rule-drafts", json={"request": ASK}, headers=headers).json()
    admin, admin_headers = clients["admin"]
    other = admin.post(f"/api/v1/rule-drafts/{draft['id']}/save", headers=admin_headers)
    assert (other.status_code, other.json()["error"]) == (404, "not_found")
    assert not (rules / "drafts.yaml").exists()


def test_a_refused_draft_says_why_and_keeps_nothing(
    with_llm: tuple[Clients, Dashboard, Path], model: ReplayServer, tmp_path: Path
) -> None:
    clients, dashboard, rules = with_llm
    _llm_model(dashboard, tmp_path, model.base_url, "disable")
    client, headers = clients["operator"]
    refused = client.post("/api/v1/rule-drafts", json={"request": ASK}, headers=headers)
    body = refused.json()
    assert (refused.status_code, body["error"]) == (422, "draft_refused")
    assert "disables existing rule 'hardhat-required'" in body["details"][0]["message"]
    assert (rules / "yard.yaml").read_text() == RULES
    assert not (rules / "drafts.yaml").exists()


def test_only_an_admin_may_change_existing_rules(
    with_llm: tuple[Clients, Dashboard, Path], model: ReplayServer, tmp_path: Path
) -> None:
    """Switching a rule off needs the admin role in the rule editor and on
    ``PUT /rules/{id}/enabled``; an operator's draft with ``allow_modify`` did it anyway."""
    clients, dashboard, rules = with_llm
    _llm_model(dashboard, tmp_path, model.base_url, "disable")
    ask = {
        "request": "switch hardhat-required off and keep people out of the drop zone",
        "target": "yard.yaml",
        "allow_modify": ["hardhat-required"],
    }
    client, headers = clients["operator"]
    refused = client.post("/api/v1/rule-drafts", json=ask, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert "needs the admin role" in refused.json()["message"]
    assert not model.bodies("disable")  # refused before the model was asked
    admin, admin_headers = clients["admin"]
    drafted = admin.post("/api/v1/rule-drafts", json=ask, headers=admin_headers)
    assert drafted.status_code == 200, drafted.text
    assert {"kind": "rule", "id": "hardhat-required", "action": "modify", "disables": True} in (
        drafted.json()["changes"]
    )
    saved = admin.post(f"/api/v1/rule-drafts/{drafted.json()['id']}/save", headers=admin_headers)
    assert saved.status_code == 200, saved.text
    (hardhat,) = [
        r
        for r in yaml.safe_load((rules / "yard.yaml").read_text())["rules"]
        if r["id"] == "hardhat-required"
    ]
    assert hardhat["enabled"] is False


def test_an_unreachable_model_is_a_502_with_the_reason(
    with_llm: tuple[Clients, Dashboard, Path], tmp_path: Path
) -> None:
    clients, dashboard, _ = with_llm
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _llm_model(dashboard, tmp_path, f"http://127.0.0.1:{port}/v1", "dwell")
    client, headers = clients["operator"]
    failed = client.post("/api/v1/rule-drafts", json={"request": ASK}, headers=headers)
    assert (failed.status_code, failed.json()["error"]) == (502, "llm_unavailable")
    assert "cannot reach the LLM endpoint" in failed.json()["message"]


def test_a_target_edited_after_the_draft_is_not_overwritten(
    with_llm: tuple[Clients, Dashboard, Path],
) -> None:
    clients, _, rules = with_llm
    client, headers = clients["operator"]
    body = {"request": ASK, "target": "yard.yaml"}
    draft = client.post("/api/v1/rule-drafts", json=body, headers=headers).json()
    edited = RULES.replace("severity: medium", "severity: low")
    (rules / "yard.yaml").write_text(edited)
    stale = client.post(f"/api/v1/rule-drafts/{draft['id']}/save", headers=headers)
    assert (stale.status_code, stale.json()["error"]) == (409, "stale_draft")
    assert (rules / "yard.yaml").read_text() == edited
    (rules / "yard.yaml").write_text(RULES)  # as it was: the draft, kept, saves now
    saved = client.post(f"/api/v1/rule-drafts/{draft['id']}/save", headers=headers)
    assert saved.status_code == 200, saved.text


def test_without_a_model_the_structured_form_takes_its_place(tmp_path: Path) -> None:
    dashboard, storage = _dashboard(tmp_path, None)
    add_users(dashboard)
    try:
        with client_for(dashboard) as client:
            headers = {"X-CSRF-Token": login(client, "operator")}
            setup = client.get("/api/v1/rule-drafts/setup").json()
            assert (setup["llm"], setup["model"]) == (False, None)
            asked = client.post("/api/v1/rule-drafts", json={"request": ASK}, headers=headers)
            assert (asked.status_code, asked.json()["error"]) == (409, "llm_not_configured")

            rule = {"id": "few-at-drop-zone", "kind": "occupancy", "zone": "drop_zone"}
            invalid = client.post("/api/v1/rule-drafts/form", json={"rule": rule}, headers=headers)
            assert invalid.json()["valid"] is False and invalid.json()["id"] is None
            assert "give `max_count`, `min_count`, or both" in invalid.json()["errors"][0]

            rule["max_count"] = 3
            rule["schedule"] = {"days": ["mon", "tue"], "between": ["06:00", "14:00"]}
            draft = client.post("/api/v1/rule-drafts/form", json={"rule": rule}, headers=headers)
            assert draft.json()["valid"] is True, draft.text
            assert "more than 3 people in zone drop_zone" in draft.json()["explanation"][0]
            saved = client.post(f"/api/v1/rule-drafts/{draft.json()['id']}/save", headers=headers)
            assert saved.status_code == 200, saved.text
        written = yaml.safe_load((tmp_path / "rules" / "drafts.yaml").read_text())
        assert written["rules"][0]["max_count"] == 3
        records, _ = dashboard.auth.audit_records(action="rules.draft_saved")
        assert records[0].detail["source"] == "form"
    finally:
        storage.close()


def test_a_single_rules_file_is_checked_and_saved_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--rules yard.yaml`` on a server started elsewhere: the page sends the file's name, which
    was resolved against the working directory (422 "must be the rules file itself"), and saving
    passed the name too."""
    site = load_site(write_site(tmp_path))
    storage = open_site_storage(site)
    single = tmp_path / "rules" / "yard.yaml"
    dashboard = Dashboard.create(lambda: site, single, storage)
    add_users(dashboard)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rule = {"id": "yard-vest", "kind": "ppe", "require": ["hardhat"], "cameras": ["yard"]}
    try:
        with client_for(dashboard) as client:
            headers = {"X-CSRF-Token": login(client, "operator")}
            target = client.get("/api/v1/rule-drafts/setup").json()["default_target"]
            assert target == "yard.yaml"
            body = {"rule": rule, "target": target}
            checked = client.post("/api/v1/rule-drafts/form", json=body, headers=headers)
            assert checked.status_code == 200, checked.text
            assert checked.json()["valid"] is True
            draft = client.post("/api/v1/rule-drafts/form", json={"rule": rule}, headers=headers)
            saved = client.post(f"/api/v1/rule-drafts/{draft.json()['id']}/save", headers=headers)
            assert saved.status_code == 200, saved.text
        assert "id: yard-vest" in single.read_text()
    finally:
        storage.close()


@pytest.mark.parametrize("elsewhere", [False, True])
def test_a_draft_made_on_one_api_node_is_saved_on_another(tmp_path: Path, elsewhere: bool) -> None:
    """Two API processes on one site database (``serve --cluster`` API nodes behind a load
    balancer, or one process before and after a restart): drafts lived in the drafting
    process's memory, so the other answered 404 "no such draft". ``elsewhere``: the second
    node's rules folder is at another path (a share mounted elsewhere on its host), and the
    draft named the first node's absolute path, which the second refused."""
    site = load_site(write_site(tmp_path))
    folders = [tmp_path / "rules", tmp_path / "rules"]
    if elsewhere:
        folders[1] = tmp_path / "host-b" / "rules"
        shutil.copytree(folders[0], folders[1])
    nodes = []
    for folder in folders:
        storage = open_site_storage(site)
        nodes.append((Dashboard.create(lambda: site, folder, storage), storage))
    add_users(nodes[0][0])
    rule = {"id": "few-at-drop-zone", "kind": "occupancy", "zone": "drop_zone", "max_count": 3}
    try:
        with client_for(nodes[0][0]) as first, client_for(nodes[1][0]) as second:
            first_headers = {"X-CSRF-Token": login(first, "operator")}
            second_headers = {"X-CSRF-Token": login(second, "operator")}
            drafted = first.post(
                "/api/v1/rule-drafts/form", json={"rule": rule}, headers=first_headers
            )
            assert drafted.json()["valid"] is True, drafted.text
            url = f"/api/v1/rule-drafts/{drafted.json()['id']}/save"
            saved = second.post(url, headers=second_headers)
            assert saved.status_code == 200, saved.text
            again = first.post(url, headers=first_headers)
            assert again.status_code == 404  # saved at most once, whichever node is asked
        written = yaml.safe_load((folders[1] / "drafts.yaml").read_text())
        assert [r["id"] for r in written["rules"]] == ["few-at-drop-zone"]
    finally:
        for _, storage in nodes:
            storage.close()


def _result(tmp_path: Path, request: str = ASK) -> DraftResult:
    return DraftResult(
        request=request,
        target=tmp_path / "rules" / "drafts.yaml",
        valid=True,
        yaml="rules: []\n",
        diff="",
        explanation=("New rule",),
        changes=(Change("rule", "drop-zone-dwell", "add"),),
        warnings=(),
        rounds=1,
        errors=(),
        round_errors=(),
        model="test-model",
        new_text="version: 1\nrules: []\n",
        base_sha256="0" * 64,
    )


def _drafts_in(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(RuleDraftRow)) or 0)


def test_drafts_are_shared_by_every_store_on_the_database(
    db_engine: Engine, db_url: str, tmp_path: Path
) -> None:
    other = create_engine_for(db_url, tmp_path)
    try:
        here, there = DraftStore(db_engine), DraftStore(other)
        draft_id = here.put(_result(tmp_path), "operator")
        assert there.get(draft_id, "operator") == _result(tmp_path)
        taken = there.take(draft_id, "operator")
        assert taken.result == _result(tmp_path)
        with pytest.raises(ApiError) as gone:
            here.get(draft_id, "operator")
        assert gone.value.status == 404
        here.give_back(taken)  # a save that failed: the draft may be confirmed again
        assert there.take(draft_id, "operator").at == taken.at
    finally:
        other.dispose()


def test_a_draft_is_only_for_its_owner(db_engine: Engine, tmp_path: Path) -> None:
    store = DraftStore(db_engine)
    draft_id = store.put(_result(tmp_path), "operator")
    for attempt in (store.get, store.take):
        with pytest.raises(ApiError) as refused:
            attempt(draft_id, "admin")
        assert refused.value.status == 404
    assert store.take(draft_id, "operator").result == _result(tmp_path)


def test_drafts_expire_after_an_hour_and_are_removed(db_engine: Engine, tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    store = DraftStore(db_engine, clock=lambda: now[0])
    draft_id = store.put(_result(tmp_path), "operator")
    now[0] += 3600.0
    assert store.get(draft_id, "operator") == _result(tmp_path)  # an hour exactly: still there
    now[0] += 1.0
    with pytest.raises(ApiError) as expired:
        store.get(draft_id, "operator")
    assert expired.value.status == 404
    assert _drafts_in(db_engine) == 0


def test_the_oldest_drafts_go_first_beyond_capacity(db_engine: Engine, tmp_path: Path) -> None:
    now = [1_700_000_000.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    store = DraftStore(db_engine, capacity=3, clock=clock)
    ids = [store.put(_result(tmp_path, f"request {n}"), "operator") for n in range(5)]
    for gone in ids[:2]:
        with pytest.raises(ApiError):
            store.get(gone, "operator")
    kept = [store.get(draft_id, "operator").request for draft_id in ids[2:]]
    assert kept == ["request 2", "request 3", "request 4"]
    assert _drafts_in(db_engine) == 3


def test_confirmations_racing_on_two_nodes_take_the_draft_once(
    db_engine: Engine, db_url: str, tmp_path: Path
) -> None:
    other = create_engine_for(db_url, tmp_path)
    stores = [DraftStore(db_engine), DraftStore(other)]
    draft_id = stores[0].put(_result(tmp_path), "operator")
    start = threading.Barrier(8)
    taken: list[DraftResult] = []
    refused: list[int] = []

    def confirm(store: DraftStore) -> None:
        start.wait()
        try:
            taken.append(store.take(draft_id, "operator").result)
        except ApiError as exc:
            refused.append(exc.status)

    threads = [threading.Thread(target=confirm, args=(stores[n % 2],)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other.dispose()
    assert taken == [_result(tmp_path)] and refused == [404] * 7
