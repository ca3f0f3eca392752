"""How often does a model turn a plain-English safety request into the rule it means?

25 requests (``bench/llm_eval_data/cases.yaml``) written for a five-camera plant
(``bench/llm_eval_data/site.yaml`` and ``rules/plant.yaml``), each with the rule semantics it
should produce: the kind and the key fields (required items, zone, objects, thresholds,
schedule, the cameras it runs on). Every request goes through the product's own path,
:class:`safewatch.llm.RuleDrafter` with up to two repair rounds, against a fresh copy of the
plant's rules; the draft is then checked structurally against the expectation, on the validated
rule with defaults filled in. A case passes when the draft is valid and one of its rules matches.

Runs against any OpenAI-compatible endpoint: ``--base-url`` / ``--model`` (or
``SAFEWATCH_LLM_BASE_URL`` / ``SAFEWATCH_LLM_MODEL``, key in ``SAFEWATCH_LLM_API_KEY``). Without
one it says so and exits 0 having measured nothing. Prints a table and the pass rate, and writes
``bench/results/llm_eval.json``.

Run: ``python -m bench.llm_eval --base-url http://localhost:11434/v1 --model qwen2.5:14b``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench._common import write_results
from safewatch.config.llm import LLMConfig
from safewatch.config.loader import load_site
from safewatch.config.rules import Rule, RuleFile
from safewatch.config.ruleset import RuleSet
from safewatch.config.site import SiteConfig
from safewatch.config.yaml_lines import parse_yaml
from safewatch.errors import SafewatchError
from safewatch.llm import ChatClient, OpenAIChatClient, RuleDrafter, RuleWorkspace
from safewatch.llm.drafting import DraftResult

DATA = Path(__file__).resolve().parent / "llm_eval_data"


@dataclass(frozen=True)
class Case:
    """One request and the semantics its draft must have."""

    id: str
    request: str
    expect: Mapping[str, Any]


@dataclass
class Outcome:
    """What one case produced."""

    id: str
    passed: bool
    valid: bool
    rounds: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    draft_yaml: str = ""


def load_cases(path: Path = DATA / "cases.yaml") -> list[Case]:
    """The cases, in file order."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Case(e["id"], " ".join(str(e["request"]).split()), e["expect"]) for e in entries]


def _shown(value: Any) -> Any:
    """A rule field as the expectations write it (lists, str units, float seconds)."""
    if isinstance(value, tuple | list):
        return [_shown(v) for v in value]
    if hasattr(value, "unit") and hasattr(value, "value"):
        return str(value)
    if hasattr(value, "value") and isinstance(value.value, str):  # enums (severity)
        return value.value
    return value


def _schedule_problem(rule: Rule, expected: Any) -> str | None:
    schedule = rule.schedule
    if expected == "none":
        return None if schedule is None else "has a schedule, expected always on"
    if schedule is None:
        return "has no schedule"
    if expected == "overnight":
        between = schedule.between
        if between is None or not between[0] > between[1]:
            return f"schedule {between} is not an overnight window"
        return None
    if "days" in expected and set(schedule.days) != set(expected["days"]):
        return f"schedule days {list(schedule.days)}, expected {expected['days']}"
    if "between" in expected and list(schedule.between or ()) != list(expected["between"]):
        return f"schedule between {schedule.between}, expected {expected['between']}"
    return None


def rule_problems(
    rule: Rule, expect: Mapping[str, Any], rules: RuleSet, site: SiteConfig
) -> list[str]:
    """Every way ``rule`` differs from the expectation (empty: it matches)."""
    problems: list[str] = []
    for key, expected in expect.items():
        if key == "kind":
            kinds = expected if isinstance(expected, list) else [expected]
            if rule.kind not in kinds:
                problems.append(f"kind {rule.kind}, expected {expected}")
        elif key == "applies_to":
            cameras = sorted(c for c in site.cameras if rules.applies_to(rule, c))
            if cameras != sorted(expected):
                problems.append(f"runs on {cameras}, expected {sorted(expected)}")
        elif key == "schedule":
            problem = _schedule_problem(rule, expected)
            if problem:
                problems.append(problem)
        elif not hasattr(rule, key):
            problems.append(f"has no field {key!r}")
        else:
            actual = _shown(getattr(rule, key))
            if isinstance(expected, dict) and "contains" in expected:
                missing = set(expected["contains"]) - set(actual or ())
                if missing:
                    problems.append(f"{key} {actual} lacks {sorted(missing)}")
            elif isinstance(expected, list):
                if sorted(map(str, actual or ())) != sorted(map(str, expected)):
                    problems.append(f"{key} {actual}, expected {expected}")
            elif isinstance(expected, int | float) and not isinstance(expected, bool):
                if not isinstance(actual, int | float) or abs(actual - expected) > 1e-6:
                    problems.append(f"{key} {actual}, expected {expected}")
            elif str(actual) != str(expected):
                problems.append(f"{key} {actual}, expected {expected}")
    return problems


def check(case: Case, result: DraftResult, workspace: RuleWorkspace) -> list[str]:
    """Why the draft does not do what the case asks (empty: it passes)."""
    if not result.valid:
        return [f"no valid draft: {'; '.join(result.errors)}"]
    merged, errors = workspace.trial({result.target: result.new_text})
    if merged is None:  # pragma: no cover - a valid draft validated the same text
        return [e.format() for e in errors]
    drafted = RuleFile.model_validate(parse_yaml(result.yaml, "draft.yaml").data or {})
    if not drafted.rules:
        return ["the draft has no rule"]
    best: list[str] | None = None
    for rule in drafted.rules:
        problems = rule_problems(merged.rule(rule.id), case.expect, merged, workspace.site)
        if not problems:
            return []
        if best is None or len(problems) < len(best):
            best = [f"{rule.id}: {p}" for p in problems]
    return best or []


def run_case(case: Case, client: ChatClient, site: SiteConfig, max_repairs: int) -> Outcome:
    """Draft one request against a fresh copy of the plant's rules and check it."""
    with tempfile.TemporaryDirectory(prefix="llm-eval-") as folder:
        rules = Path(folder) / "rules"
        shutil.copytree(DATA / "rules", rules)
        workspace = RuleWorkspace(site, rules)
        started = time.perf_counter()
        try:
            result = RuleDrafter(client, max_repairs=max_repairs).draft(case.request, workspace)
        except SafewatchError as exc:
            return Outcome(case.id, False, False, 0, time.perf_counter() - started, [str(exc)])
        seconds = time.perf_counter() - started
        problems = check(case, result, workspace)
        return Outcome(
            case.id, not problems, result.valid, result.rounds, seconds, problems, result.yaml
        )


def endpoint(args: argparse.Namespace, environ: Mapping[str, str]) -> LLMConfig | None:
    """The endpoint from the flags, else the environment; ``None`` when neither names one."""
    base_url = args.base_url or environ.get("SAFEWATCH_LLM_BASE_URL")
    model = args.model or environ.get("SAFEWATCH_LLM_MODEL")
    if not base_url or not model:
        return None
    return LLMConfig.model_validate(
        {
            "base_url": base_url,
            "model": model,
            "api_key": environ.get("SAFEWATCH_LLM_API_KEY") or None,
            "timeout": args.timeout,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    parser.add_argument("--model", help="Model name as the endpoint knows it.")
    parser.add_argument("--timeout", type=float, default=120.0, help="Seconds per reply.")
    parser.add_argument("--only", action="append", default=[], help="Run only this case id.")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/llm_eval.json).")
    args = parser.parse_args(argv)

    config = endpoint(args, os.environ)
    if config is None:
        print(
            "no LLM endpoint configured: pass --base-url and --model (or set "
            "SAFEWATCH_LLM_BASE_URL and SAFEWATCH_LLM_MODEL); nothing measured"
        )
        return 0
    cases = [c for c in load_cases() if not args.only or c.id in args.only]
    site = load_site(DATA / "site.yaml").config
    outcomes = []
    with OpenAIChatClient.from_config(config) as client:
        for case in cases:
            outcome = run_case(case, client, site, config.max_repairs)
            outcomes.append(outcome)
            mark = "pass" if outcome.passed else "FAIL"
            detail = "" if outcome.passed else f"  {'; '.join(outcome.problems)[:160]}"
            print(f"{mark}  {case.id:<32} rounds={outcome.rounds} {outcome.seconds:6.1f}s{detail}")
    passed = sum(o.passed for o in outcomes)
    total = len(outcomes)
    summary = {
        "endpoint": config.base_url,
        "model": config.model,
        "cases": total,
        "passed": passed,
        "pass_rate": passed / total if total else None,
        "valid_rate": sum(o.valid for o in outcomes) / total if total else None,
        "mean_rounds": sum(o.rounds for o in outcomes) / total if total else None,
        "mean_seconds": sum(o.seconds for o in outcomes) / total if total else None,
        "platform": platform.platform(),
        "results": [asdict(o) for o in outcomes],
    }
    rate = f"{passed}/{total} = {passed / total:.0%}" if total else "no cases"
    print(f"pass rate {rate} (model {config.model} at {config.base_url})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.out}")
    else:
        print(f"wrote {write_results('llm_eval', summary)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
