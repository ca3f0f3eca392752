"""bench/llm_eval's harness: its checks, its expectations, and its output, on replayed answers.

These runs measure the harness, not a model: the replay server answers with hand-written
reference drafts (``bench/llm_eval_data/reference.yaml``) and with deliberately wrong ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bench.llm_eval import DATA, load_cases, main

from llm_replay import Recorded, chat_completion, replay


def answer(rule: dict[str, object]) -> Recorded:
    block = yaml.safe_dump({"version": 1, "rules": [rule]}, sort_keys=False)
    return Recorded(200, chat_completion(f"```yaml\n{block}```"))


REFERENCE = yaml.safe_load((DATA / "reference.yaml").read_text())


def test_25_cases_with_unique_ids_and_a_reference_each() -> None:
    cases = load_cases()
    assert len(cases) == 25
    assert len({c.id for c in cases}) == 25
    assert set(REFERENCE) == {c.id for c in cases}
    assert {c.expect["kind"] for c in cases} == {
        "ppe", "zone_intrusion", "dwell", "line_crossing", "proximity", "occupancy",
        "zone_clear", "speed",
    }  # fmt: skip


@pytest.mark.slow
def test_every_expectation_can_be_met(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = [answer(REFERENCE[c.id]) for c in load_cases()]
    out = tmp_path / "eval.json"
    with replay({"reference": answers}) as server:
        assert main(["--base-url", server.base_url, "--model", "reference", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    failures = [r for r in result["results"] if not r["passed"]]
    assert failures == []
    assert (result["passed"], result["cases"], result["pass_rate"]) == (25, 25, 1.0)
    assert "pass rate 25/25 = 100%" in capsys.readouterr().out


def test_wrong_and_invalid_drafts_fail_with_reasons(tmp_path: Path) -> None:
    wrong_item = {**REFERENCE["dock-vest"], "require": ["hardhat"]}
    wrong_camera = {**REFERENCE["warehouse-forklift-speed"], "cameras": ["dock"]}
    never_valid = {"id": "x", "kind": "ppe", "require": ["hardhat"], "zones": ["nowhere"]}
    answers = {
        "m": [
            answer(REFERENCE["press-hardhat-night"]),
            answer(wrong_item),
            answer(wrong_camera),
            answer(never_valid),
            answer(never_valid),
            answer(never_valid),
        ]
    }
    out = tmp_path / "eval.json"
    only = ["press-hardhat-night", "dock-vest", "warehouse-forklift-speed", "dock-door-count"]
    args = ["--model", "m", "--out", str(out), *(x for c in only for x in ("--only", c))]
    with replay(answers) as server:
        assert main(["--base-url", server.base_url, *args]) == 0
    result = json.loads(out.read_text())
    by_id = {r["id"]: r for r in result["results"]}
    assert [by_id[c]["passed"] for c in only] == [True, False, False, False]
    assert by_id["dock-vest"]["problems"] == ["dock-vest: require ['hardhat'], expected ['vest']"]
    assert by_id["warehouse-forklift-speed"]["problems"] == [
        "warehouse-forklift-speed: runs on ['dock'], expected ['warehouse']"
    ]
    assert by_id["dock-door-count"]["rounds"] == 3
    assert by_id["dock-door-count"]["problems"][0].startswith("no valid draft: draft.yaml")
    assert result["pass_rate"] == 0.25 and result["valid_rate"] == 0.75


def test_without_an_endpoint_nothing_is_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SAFEWATCH_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("SAFEWATCH_LLM_MODEL", raising=False)
    out = tmp_path / "eval.json"
    assert main(["--out", str(out)]) == 0
    assert "no LLM endpoint configured" in capsys.readouterr().out
    assert not out.exists()
