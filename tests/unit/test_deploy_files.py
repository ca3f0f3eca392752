"""The deployment files in deploy/ parse, name only real ``safewatch`` commands and options, and
chart only metrics that safewatch exports.

Every command line in the compose file, the Helm values and the systemd units is parsed by the
CLI's own click command (typer's), so a renamed option fails here rather than at a plant. The
Grafana dashboard's and the Prometheus rules' metric names are checked against the metric names
declared in ``src/`` (a counter is exported with ``_total``, a histogram as ``_bucket``, ``_sum``
and ``_count``).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from safewatch.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "safewatch"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def parse_cli(argv: list[str]) -> Any:
    """Parse ``argv`` (starting with ``safewatch``) exactly as the CLI would; raise if it would
    refuse it (no such command, no such option, a missing value).

    Typer carries its own copy of click, so groups are told by duck typing, not by class.
    """
    assert argv[0] == "safewatch", argv
    command: Any = typer.main.get_command(app)
    args = argv[1:]
    names = ["safewatch"]
    while hasattr(command, "list_commands"):
        assert args, f"{' '.join(argv)} names no subcommand of {' '.join(names)}"
        sub = command.get_command(command.context_class(command), args[0])
        assert sub is not None, f"{' '.join(names)} has no command {args[0]!r}"
        names.append(args[0])
        command, args = sub, args[1:]
    return command.make_context(" ".join(names), list(args))


def compose_commands() -> Iterator[tuple[str, list[str]]]:
    compose = load_yaml(DEPLOY / "compose.yaml")
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command and command[0] == "safewatch":
            yield f"compose {name}", [str(part) for part in command]


def helm_commands() -> Iterator[tuple[str, list[str]]]:
    values = load_yaml(CHART / "values.yaml")
    for part in ("migrate", "analyzer", "api"):
        yield f"helm {part}", [str(arg) for arg in values[part]["args"]]


def systemd_commands() -> Iterator[tuple[str, list[str]]]:
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert argv[0].endswith("/safewatch"), line
                argv = [
                    "safewatch",
                    *(a.replace("%i", "8081").replace("%H", "h") for a in argv[1:]),
                ]
                yield f"{unit.name}", argv


ALL_COMMANDS = [*compose_commands(), *helm_commands(), *systemd_commands()]


def test_every_deploy_file_names_commands() -> None:
    places = {place.split()[0] for place, _ in ALL_COMMANDS}
    assert places >= {"compose", "helm", "safewatch-analyzer@.service", "safewatch-api.service"}
    roles = {argv[argv.index("--role") + 1] for _, argv in ALL_COMMANDS if "--role" in argv}
    assert roles == {"analyzer", "api"}


@pytest.mark.parametrize(("place", "argv"), ALL_COMMANDS, ids=[p for p, _ in ALL_COMMANDS])
def test_each_command_is_a_real_safewatch_command(place: str, argv: list[str]) -> None:
    context = parse_cli(argv)
    if argv[1] == "serve":
        assert context.params["cluster"] is True, f"{place}: a deployed serve runs --cluster"
        assert context.params["role"] in ("analyzer", "api")


def test_the_checker_refuses_a_wrong_option() -> None:
    with pytest.raises(Exception, match="No such option: --clustre") as refused:
        parse_cli(["safewatch", "serve", "-c", "x.yaml", "--clustre"])
    assert type(refused.value).__name__ == "NoSuchOption"
    with pytest.raises(AssertionError, match="no command"):
        parse_cli(["safewatch", "db", "upgrayed"])


def test_compose_runs_a_migration_first_and_gives_analyzers_shm_and_grace() -> None:
    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    assert {"postgres", "redis", "minio", "migrate", "analyzer", "api"} <= set(services)
    assert services["migrate"]["restart"] == "no"
    for name in ("analyzer", "api"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    analyzer = services["analyzer"]
    assert analyzer["shm_size"] and analyzer["stop_grace_period"] == "60s"
    assert "replicas" in analyzer["deploy"]
    assert services["mediamtx"]["profiles"] == ["mediamtx"]
    assert "--save" in services["redis"]["command"]  # nothing in Redis must survive it


def test_compose_requires_the_cluster_secret_and_safewatch_refuses_example_values() -> None:
    """No default secret anyone can read here: compose stops without one (``:?``), and no
    default or example password of the deploy files is accepted as one."""
    from safewatch.config.cluster import is_placeholder

    text = (DEPLOY / "compose.yaml").read_text()
    env = load_yaml(DEPLOY / "compose.yaml")["x-safewatch"]["environment"]
    assert env["SAFEWATCH_CLUSTER_SECRET"].startswith("${SAFEWATCH_CLUSTER_SECRET:?")
    assert "change-this-cluster-secret" not in text
    defaults = set(re.findall(r"\$\{[A-Z_]*(?:PASSWORD|SECRET)[A-Z_]*:-([^}]*)\}", text))
    assert defaults == {"safewatch", "safewatch-secret"}  # (Postgres, MinIO: never reachable
    # from outside the compose network; a new one must be added to the refused placeholders)
    assert all(is_placeholder(value) or len(value) < 16 for value in defaults)
    assert is_placeholder("change-this-cluster-secret")


def test_the_cluster_site_file_is_valid_and_accepted_for_cluster_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from safewatch.config.cluster import cluster_refusal
    from safewatch.config.loader import load_site

    for name, value in {
        "SAFEWATCH_DATABASE_URL": "postgresql+psycopg://u:p@postgres:5432/safewatch",
        "SAFEWATCH_REDIS_URL": "redis://redis:6379/0",
        "SAFEWATCH_S3_ACCESS_KEY": "k",
        "SAFEWATCH_S3_SECRET_KEY": "s",
        "SAFEWATCH_CLUSTER_SECRET": "sixteen-or-more-chars",
    }.items():
        monkeypatch.setenv(name, value)
    site = load_site(DEPLOY / "site.cluster.yaml")
    assert cluster_refusal(site) is None
    assert site.config.cluster.redis_url == "redis://redis:6379/0"
    secret = site.config.cluster.secret
    assert secret is not None and secret.get_secret_value() == "sixteen-or-more-chars"
    assert len(site.config.cameras) == 6
    # The rules compose mounts load against it: they named the example's camera 'yard', and
    # every node of the quick start failed at start-up.
    from safewatch.rules import load_rules

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = [
        v for v in compose["x-safewatch"]["volumes"] if v.endswith(":/etc/safewatch/rules:ro")
    ]
    (mount,) = mounts
    rules = load_rules(DEPLOY / mount.split(":")[0], site.config)
    assert [rule.id for rule in rules.rules] == ["hardhat-required"]


def test_the_helm_chart_parses_and_its_templates_use_the_values() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "safewatch"
    values = load_yaml(CHART / "values.yaml")
    templates = {p.name: p.read_text() for p in (CHART / "templates").iterdir()}
    assert "kind: StatefulSet" in templates["analyzer-statefulset.yaml"]
    assert "kind: Job" in templates["migrate-job.yaml"]
    assert "kind: Deployment" in templates["api-deployment.yaml"]
    assert "kind: Service" in templates["api-service.yaml"]
    for name, text in templates.items():
        for path in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
            node: Any = values
            for key in path.split("."):
                assert isinstance(node, dict) and key in node, f"{name}: .Values.{path} unset"
                node = node[key]
    assert "medium: Memory" in templates["analyzer-statefulset.yaml"]
    assert "terminationGracePeriodSeconds" in templates["analyzer-statefulset.yaml"]


_DECLARED = re.compile(
    r"(?:Counter|Gauge|Histogram|Summary|_counter|_gauge|MetricFamily)\(\s*\"(safewatch_[a-z0-9_]+)\""
)
_USED = re.compile(r"\bsafewatch_[a-z0-9_]+\b")
_SUFFIX = re.compile(r"_(total|bucket|sum|count|created)$")


def declared_metrics() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "safewatch").rglob("*.py"):
        names.update(_DECLARED.findall(path.read_text(encoding="utf-8")))
    return {_SUFFIX.sub("", name) for name in names}


def used_metrics() -> dict[str, set[str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "safewatch.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = load_yaml(DEPLOY / "prometheus" / "rules.yml")
    expressions += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    found: dict[str, set[str]] = {}
    for expr in expressions:
        for name in _USED.findall(expr):
            found.setdefault(_SUFFIX.sub("", name), set()).add(name)
    return found


def test_every_charted_metric_exists_in_the_code() -> None:
    declared = declared_metrics()
    assert "safewatch_frame_age_seconds" in declared  # the scan finds what it must
    used = used_metrics()
    assert len(used) >= 10
    assert sorted(set(used) - declared) == []


def test_the_prometheus_config_scrapes_both_roles_and_loads_the_rules() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"safewatch-analyzer", "safewatch-api"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]


def test_the_build_requires_a_setuptools_that_reads_the_license_expression() -> None:
    """``license = "Apache-2.0"`` (an SPDX expression, PEP 639) is read by setuptools 77 and
    later; 68 to 76 refuse it ("`project.license` must be valid exactly by one definition"),
    so a build with an older setuptools already installed (``--no-build-isolation``, a pinned
    mirror) failed although the bound allowed it (measured with 76.1.0 and 77.0.3)."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(pyproject["project"]["license"], str)  # an expression, not {file = ...}
    (bound,) = [
        int(found.group(1))
        for requirement in pyproject["build-system"]["requires"]
        if (found := re.fullmatch(r"setuptools>=(\d+)(?:\.[\d.]+)?", requirement.replace(" ", "")))
    ]
    assert bound >= 77
