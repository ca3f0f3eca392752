"""The deployment files in deploy/ parse, name only real ``safewatch`` commands and options, and
chart only metrics that safewatch exports.

Every command line in the compose file, the Helm values and the systemd units is parsed by the
CLI's own click command (typer's), so a renamed option fails here rather than at a plant. The
Grafana dashboard's and the Prometheus rules' metric names are checked against the metric names
declared in ``src/`` (a counter is exported with ``_total``, a histogram as ``_bucket``, ``_sum``
and ``_count``). The Helm chart is rendered by a small renderer here (there is no helm binary) so
that what its objects say can be checked: the order of its hooks.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shlex
import subprocess
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
CONFIG = DEPLOY / "config"  # what compose mounts as /etc/safewatch


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
    for part in ("migrate", "analyzer", "api", "retention"):
        yield f"helm {part}", [str(arg) for arg in values[part]["args"]]


def unit_examples(unit: Path) -> list[str]:
    """The instance names the unit's comments give as examples (``name@INSTANCE``)."""
    prefix = unit.name.removesuffix(".service")
    if not prefix.endswith("@"):
        return []
    examples = re.findall(re.escape(prefix) + r"(\w+)", unit.read_text())
    assert examples, f"{unit.name} gives no example instance"
    return examples


def systemd_commands() -> Iterator[tuple[str, list[str]]]:
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert argv[0].endswith("/safewatch"), line
                for instance in unit_examples(unit) or [""]:
                    args = (a.replace("%i", instance).replace("%H", "h") for a in argv[1:])
                    yield f"{unit.name} {instance}".strip(), ["safewatch", *args]


ALL_COMMANDS = [*compose_commands(), *helm_commands(), *systemd_commands()]


def test_every_deploy_file_names_commands() -> None:
    places = {place.split()[0] for place, _ in ALL_COMMANDS}
    assert places >= {
        "compose",
        "helm",
        "safewatch-analyzer@.service",
        "safewatch-api.service",
        "safewatch-retention.service",
    }
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
    for name in ("analyzer", "api"):  # (the api service started before the bucket existed)
        for first in ("migrate", "minio-bucket"):
            assert services[name]["depends_on"][first] == {
                "condition": "service_completed_successfully"
            }, (name, first)
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


def site_variables(node: Any) -> set[str]:
    """The names of the ``${VARIABLES}`` a parsed site file's values refer to (not its
    comments)."""
    if isinstance(node, dict):
        return set().union(*(site_variables(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(site_variables(value) for value in node))
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", str(node)))


def test_every_variable_the_cluster_site_file_names_reaches_the_compose_containers() -> None:
    """A container gets only the variables its ``environment:`` lists, not the shell's nor
    deploy/.env's (those only fill in the compose file itself): the camera URLs, site name,
    time zone, capacity and job slots "set in the environment" were never seen by safewatch,
    which silently took the site file's defaults. Each variable is passed under its own name
    (or given a value here), and so are those safewatch and docs/cluster.md say it reads
    directly (the model mirror, the watcher's polling switch, the tracing endpoint)."""
    needed = site_variables(load_yaml(CONFIG / "site.yaml"))
    assert {"CAM01_URL", "SAFEWATCH_CAPACITY", "SAFEWATCH_CLUSTER_SECRET"} <= needed
    needed |= {"SAFEWATCH_MIRROR", "WATCHFILES_FORCE_POLLING", "OTEL_EXPORTER_OTLP_ENDPOINT"}
    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    running = [
        name
        for name, service in services.items()
        if isinstance(service.get("command"), list) and service["command"][0] == "safewatch"
    ]
    assert set(running) == {"migrate", "analyzer", "api", "retention"}
    for name in running:
        environment = services[name]["environment"]
        assert isinstance(environment, dict), name
        missing = sorted(needed - set(environment))
        assert not missing, f"compose {name}: {missing} never reach the container"
        for variable in needed:  # a bare pass-on passes the variable of that name
            passed = re.fullmatch(r"\$\{(\w+)(?::-)?\}", str(environment[variable]))
            assert passed is None or passed.group(1) == variable, (name, variable)


def load_cluster_site(monkeypatch: pytest.MonkeyPatch) -> Any:
    """deploy/config/site.yaml, loaded with the ``${VARIABLES}`` it needs set."""
    from safewatch.config.loader import load_site

    for name, value in {
        "SAFEWATCH_DATABASE_URL": "postgresql+psycopg://u:p@postgres:5432/safewatch",
        "SAFEWATCH_REDIS_URL": "redis://redis:6379/0",
        "SAFEWATCH_S3_ACCESS_KEY": "k",
        "SAFEWATCH_S3_SECRET_KEY": "s",
        "SAFEWATCH_CLUSTER_SECRET": "sixteen-or-more-chars",
    }.items():
        monkeypatch.setenv(name, value)
    return load_site(CONFIG / "site.yaml")


def test_the_cluster_site_file_is_valid_and_accepted_for_cluster_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from safewatch.config.cluster import cluster_refusal

    site = load_cluster_site(monkeypatch)
    assert cluster_refusal(site) is None
    assert site.config.cluster.redis_url == "redis://redis:6379/0"
    secret = site.config.cluster.secret
    assert secret is not None and secret.get_secret_value() == "sixteen-or-more-chars"
    assert len(site.config.cameras) == 6
    # The rules compose mounts load against it: they named the example's camera 'yard', and
    # every node of the quick start failed at start-up.
    from safewatch.rules import load_rules

    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    command = [str(part) for part in services["analyzer"]["command"]]
    rules_folder = compose_source("analyzer", Path(command[command.index("--rules") + 1]))
    rules = load_rules(rules_folder, site.config)
    assert [rule.id for rule in rules.rules] == ["hardhat-required"]


def compose_mounts(service: str) -> list[tuple[Path, Path]]:
    """A compose service's bind mounts: (source in the repository, target in the container)."""
    mounts = []
    for volume in load_yaml(DEPLOY / "compose.yaml")["services"][service].get("volumes", []):
        source, target = (
            (volume["source"], volume["target"])
            if isinstance(volume, dict)
            else volume.split(":")[:2]
        )
        if source.startswith("."):
            mounts.append(((DEPLOY / source).resolve(), Path(target)))
    return mounts


def compose_source(service: str, path: Path) -> Path:
    """Where the file or folder ``path`` of a compose service's container comes from."""
    for source, target in compose_mounts(service):
        if path == target or path.is_relative_to(target):
            return source / path.relative_to(target)
    raise AssertionError(f"compose {service}: nothing mounted at {path}")


def test_compose_mounts_the_site_files_folder_so_that_edits_reach_the_nodes() -> None:
    """A bind-mounted file stays the inode it was when the container started: an editor or
    ``git pull`` that saves a new file and renames it over the old one left every container
    reading the old file, and the site file's live reload (which polls the path's mtime and
    size) never saw an edit. Mounting the folder, the path resolves to the new file."""
    for name, service in load_yaml(DEPLOY / "compose.yaml")["services"].items():
        command = [str(part) for part in service.get("command") or []]
        if command[:1] != ["safewatch"]:
            continue
        config = Path(command[command.index("-c") + 1])
        targets = [target for _, target in compose_mounts(name)]
        assert config not in targets, f"compose {name}: the site file is mounted by itself"
        assert compose_source(name, config).is_file(), name
        assert compose_source(name, config.parent).is_dir(), name


# -- a renderer for the chart's templates (no helm binary here) ----------------------------------
#
# It knows the Go-template constructs the chart uses (``define``/``include``, ``if``, ``range``,
# ``.Values``/``.Release``/``.Chart``, ``toJson``, ``toYaml``, ``nindent``, ``quote``,
# ``sha256sum``, comments, the ``{{-`` and ``-}}`` trims) and refuses any other, so a template
# it cannot follow fails here instead of being checked half-rendered.

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
Node = tuple[Any, ...]


def _template_tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position, trim_next = 0, False
    for found in _ACTION.finditer(text):
        literal = text[position : found.start()]
        if trim_next:
            literal = literal.lstrip()
        if found.group(1):
            literal = literal.rstrip()
        tokens.append(("text", literal))
        action = found.group(2).strip()
        if not (action.startswith("/*") and action.endswith("*/")):  # a comment
            tokens.append(("action", action))
        position, trim_next = found.end(), bool(found.group(3))
    rest = text[position:]
    tokens.append(("text", rest.lstrip() if trim_next else rest))
    return tokens


def _parse_template(tokens: list[tuple[str, str]], start: int = 0) -> tuple[list[Node], int]:
    """Nodes up to the matching ``end`` (or the end of the tokens); the index after it."""
    nodes: list[Node] = []
    index = start
    while index < len(tokens):
        kind, value = tokens[index]
        index += 1
        if kind == "text":
            nodes.append(("text", value))
        elif value == "end":
            return nodes, index
        elif value.startswith(("define ", "if ", "range ")):
            keyword, _, argument = value.partition(" ")
            body, index = _parse_template(tokens, index)
            nodes.append((keyword, argument.strip(), body))
        else:
            assert not value.startswith(("else", "with ", "block ", "template ", "/*")), value
            nodes.append(("expr", value))
    return nodes, index


def _indent(text: str, width: int) -> str:
    return " " * width + text.replace("\n", "\n" + " " * width)


class ChartRenderer:
    """Renders the chart's templates with ``values`` as ``helm template`` would (for the
    constructs above): ``render()`` gives each template's YAML documents."""

    def __init__(self, values: dict[str, Any], revision: int = 1, release: str = "rel") -> None:
        chart = load_yaml(CHART / "Chart.yaml")
        self.context: dict[str, Any] = {
            "Values": values,
            "Release": {"Name": release, "Revision": revision},
            "Chart": {"Name": chart["name"], "AppVersion": chart["appVersion"]},
        }
        self.defines: dict[str, list[Node]] = {}
        for path in sorted((CHART / "templates").glob("_*.tpl")):
            nodes, _ = _parse_template(_template_tokens(path.read_text()))
            for node in nodes:
                if node[0] == "define":
                    self.defines[shlex.split(node[1])[0]] = node[2]
                else:
                    assert node == ("text", "") or not node[1].strip(), (path.name, node)

    def render(self) -> dict[str, list[dict[str, Any]]]:
        """Every template's non-empty documents, by file name."""
        out: dict[str, list[dict[str, Any]]] = {}
        for path in sorted((CHART / "templates").glob("*.yaml")):
            nodes, _ = _parse_template(_template_tokens(path.read_text()))
            text = self._nodes(nodes, {})
            out[path.name] = [doc for doc in yaml.safe_load_all(text) if doc]
        return out

    def _nodes(self, nodes: list[Node], variables: dict[str, Any]) -> str:
        parts: list[str] = []
        for node in nodes:
            if node[0] == "text":
                parts.append(node[1])
            elif node[0] == "expr":
                parts.append(self._string(self._pipeline(node[1], variables)))
            elif node[0] == "if":
                if self._pipeline(node[1], variables):
                    parts.append(self._nodes(node[2], variables))
            elif node[0] == "range":
                found = re.fullmatch(r"(\$\w+), (\$\w+) := (.+)", node[1])
                assert found, node[1]
                mapping = self._pipeline(found.group(3), variables) or {}
                for key in sorted(mapping):  # Go ranges over a map in key order
                    inner = {**variables, found.group(1): key, found.group(2): mapping[key]}
                    parts.append(self._nodes(node[2], inner))
            else:
                raise AssertionError(f"a {node[0]} inside a template: {node}")
        return "".join(parts)

    def _pipeline(self, expression: str, variables: dict[str, Any]) -> Any:
        first, *functions = (part.strip() for part in expression.split("|"))
        words = shlex.split(first)
        if words[0] == "include":
            assert words[2:] == ["."], first
            value: Any = self._nodes(self.defines[words[1]], variables)
        elif words[0] == "toJson":
            value = json.dumps(self._value(words[1], variables), separators=(",", ":"))
        elif words[0] == "toYaml":
            dumped = yaml.safe_dump(self._value(words[1], variables), default_flow_style=False)
            value = dumped.removesuffix("\n")
        else:
            (word,) = words
            value = self._value(word, variables)
        for function in functions:
            name, *arguments = function.split()
            if name == "nindent":
                value = "\n" + _indent(self._string(value), int(arguments[0]))
            elif name == "quote":
                value = json.dumps(self._string(value))
            elif name == "sha256sum":
                value = hashlib.sha256(self._string(value).encode()).hexdigest()
            else:
                raise AssertionError(f"unknown template function {name!r}")
        return value

    def _value(self, word: str, variables: dict[str, Any]) -> Any:
        if word.startswith("$"):
            return variables[word]
        assert word.startswith("."), word
        node: Any = self.context
        for key in word[1:].split("."):
            assert isinstance(node, dict) and key in node, f"{word} is not set"
            node = node[key]
        return node

    @staticmethod
    def _string(value: Any) -> str:
        assert not isinstance(value, dict | list), value  # Go would print map[...]
        return str(value)


def chart_documents(**values: Any) -> dict[str, list[dict[str, Any]]]:
    """The chart rendered with values.yaml (top-level keys replaced by ``values``)."""
    return ChartRenderer({**load_yaml(CHART / "values.yaml"), **values}).render()


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


def test_a_panel_of_a_plain_metric_names_each_of_its_series_apart() -> None:
    """A panel that charts a metric as it is draws one line per label set: a legend that names
    only some labels showed three lines called "yard" (the stages of seconds since frame)."""
    from prometheus_client.parser import text_string_to_metric_families

    from safewatch.runtime.metrics import CameraStatus, RuntimeMetrics, RuntimeSnapshot

    now = 1_800_000_000.0
    camera = CameraStatus(
        camera_id="yard",
        name="Yard",
        worker_state="running",
        source_state="streaming",
        message="",
        pid=1,
        incarnation=1,
        restarts=0,
        fps_target=5.0,
        decoded=1,
        sampled=1,
        reconnects=0,
        bad_packets=0,
        source_dropped=0,
        mailbox_dropped=0,
        torn_dropped=0,
        stale_dropped=0,
        inferred=1,
        motion_skipped=0,
        analysed=1,
        decode_fps=5.0,
        analysed_fps=5.0,
        last_decoded_at=now,
        last_inferred_at=now,
        last_evaluated_at=now,
        memory_bytes=1,
    )
    metrics = RuntimeMetrics()
    metrics.watch(lambda: RuntimeSnapshot([camera], 0, 0, 1, now))
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for found in family.samples:
            labels.setdefault(found.name, set()).update(found.labels)
    dashboard = json.loads((DEPLOY / "grafana" / "safewatch.json").read_text())
    plain = [
        (p["title"], t)
        for p in dashboard["panels"]
        for t in p["targets"]
        if re.fullmatch(r"safewatch_[a-z0-9_]+", t["expr"])
    ]
    assert len(plain) >= 4  # the scan finds what it must
    for title, target in plain:
        missing = {
            n for n in labels[target["expr"]] if f"{{{{{n}}}}}" not in target["legendFormat"]
        }
        assert not missing, f"{title!r}: the legend does not name {sorted(missing)}"


def test_the_prometheus_config_scrapes_both_roles_and_loads_the_rules() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"safewatch-analyzer", "safewatch-api"}
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]


def test_the_alert_rules_cover_a_silent_target_and_unplaced_or_unowned_cameras() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    rules = load_yaml(DEPLOY / "prometheus" / "rules.yml")
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    found = re.fullmatch(r'up\{job=~"([^"]+)"\} == 0', alerts["SafewatchTargetDown"])
    assert found is not None
    for job in config["scrape_configs"]:  # Prometheus anchors the regular expression
        assert re.fullmatch(found.group(1), job["job_name"]), job["job_name"]
    assert alerts["SafewatchCamerasUnplaced"] == "safewatch_cluster_cameras_unplaced > 0"
    assert alerts["SafewatchCamerasUnowned"] == "safewatch_cluster_cameras_unowned > 0"
    # a disk filling up stopped incident writes with nothing said (docs/recording.md)
    assert alerts["SafewatchStorageLow"] == (
        "safewatch_storage_free_bytes < on (instance, root) safewatch_storage_min_free_bytes"
    )


def test_prometheus_sends_a_token_where_metrics_need_one(tmp_path: Path) -> None:
    """Each scrape job is asked of the app its compose service serves: the API node's /metrics
    needs a token (401 without: the job scraped nothing), so its job reads one from a file
    that compose mounts into Prometheus and git ignores, and a token made by
    ``safewatch users token`` (a viewer's) is accepted there."""
    from fastapi.testclient import TestClient

    from api_support import PASSWORD, FakeOps, make_app, make_dashboard
    from safewatch.api import ApiSettings, create_app

    compose = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    prometheus_mounts = {
        (mount["target"], mount["source"], mount.get("read_only"))
        for mount in services["prometheus"]["volumes"]
        if isinstance(mount, dict)
    }
    dashboard, _ = make_dashboard(tmp_path)
    dashboard.auth.add_user("prometheus", PASSWORD, "viewer")
    token = dashboard.auth.create_token("prometheus", "prometheus").token
    apps = {True: make_app(dashboard), False: create_app(ApiSettings(), FakeOps())}
    ignored = (ROOT / ".gitignore").read_text().split()
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    needing = []
    for job in config["scrape_configs"]:
        hosts = [
            target.split(":")[0] for c in job.get("static_configs", []) for target in c["targets"]
        ]
        hosts += [name for c in job.get("dns_sd_configs", []) for name in c["names"]]
        assert hosts, job["job_name"]
        for host in hosts:
            _, on_dashboard = _role([str(arg) for arg in services[host]["command"]])
            with TestClient(apps[on_dashboard]) as client:
                bare = client.get(job["metrics_path"]).status_code
                if bare == 200:
                    continue
                assert bare == 401
                needing.append(job["job_name"])
                credentials_file = job["authorization"]["credentials_file"]
                assert job["authorization"].get("type", "Bearer") == "Bearer"
                sent = {"Authorization": f"Bearer {token}"}
                assert client.get(job["metrics_path"], headers=sent).status_code == 200
            (source,) = [s for t, s, ro in prometheus_mounts if t == credentials_file and ro]
            path = f"deploy/{source.removeprefix('./')}"
            assert any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path
    assert needing == ["safewatch-api"]


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


def _hook(document: dict[str, Any]) -> tuple[set[str], int, set[str]] | None:
    """A Helm hook's events, weight and delete policies; ``None`` for a release resource."""
    annotations = document["metadata"].get("annotations") or {}
    if "helm.sh/hook" not in annotations:
        return None
    policies = annotations.get("helm.sh/hook-delete-policy", "before-hook-creation")
    return (
        {event.strip() for event in annotations["helm.sh/hook"].split(",")},
        int(annotations.get("helm.sh/hook-weight", "0")),
        {policy.strip() for policy in policies.split(",")},
    )


def _pod_references(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets a pod spec mounts or reads its environment from."""
    found: set[tuple[str, str]] = set()
    for volume in pod.get("volumes", []):
        sources = [volume, *volume.get("projected", {}).get("sources", [])]
        for source in sources:
            if "configMap" in source:
                found.add(("ConfigMap", source["configMap"]["name"]))
            if "secret" in source:
                secret = source["secret"]
                found.add(("Secret", secret.get("secretName") or secret["name"]))
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                found.add(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                found.add(("Secret", source["secretRef"]["name"]))
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            if "configMapKeyRef" in value_from:
                found.add(("ConfigMap", value_from["configMapKeyRef"]["name"]))
            if "secretKeyRef" in value_from:
                found.add(("Secret", value_from["secretKeyRef"]["name"]))
    return found


def test_the_renderer_follows_the_chart() -> None:
    """The renderer the hook and probe checks use gives what helm would: every template's
    documents, the site file as written in values.yaml, one rules key per rule file."""
    rendered = chart_documents(rules={"ppe.yaml": "version: 1\nrules: []\n"})
    kinds = sorted(doc["kind"] for docs in rendered.values() for doc in docs)
    assert kinds == sorted(
        ["ConfigMap"] * 3 + ["CronJob", "Deployment", "Job", "Service", "Service", "StatefulSet"]
    )
    site, rules = rendered["configmap.yaml"]
    assert site["data"]["site.yaml"] == load_yaml(CHART / "values.yaml")["site"]
    assert rules["data"] == {"ppe.yaml": "version: 1\nrules: []\n"}
    (analyzer,) = rendered["analyzer-statefulset.yaml"]
    env = analyzer["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [variable["name"] for variable in env] == ["SAFEWATCH_MODELS", "POD_IP", "POD_NAME"]
    with pytest.raises(AssertionError, match="nope is not set"):
        _parse_and_render("{{ .Values.nope }}")


def _parse_and_render(text: str) -> str:
    renderer = ChartRenderer(load_yaml(CHART / "values.yaml"))
    nodes, _ = _parse_template(_template_tokens(text))
    return renderer._nodes(nodes, {})


def test_the_migration_hook_reads_only_what_exists_before_the_release() -> None:
    """Helm runs pre-install and pre-upgrade hooks before it creates or updates the chart's own
    resources, in the order of their weights. A hook Job that mounts a ConfigMap of the chart
    waits for a volume that does not exist yet at install (the pod never starts and the
    install fails at its timeout) and reads the previous release's at upgrade. So everything
    the Job reads is made by a hook of the same events with a lower weight, or by the operator
    before installing (the envSecret of values.yaml); hooks are not release resources
    (``helm uninstall`` leaves them), so each is deleted once the hooks succeeded, and its name
    does not change between revisions so that a failed run's leftovers are replaced."""
    values = load_yaml(CHART / "values.yaml")
    documents = [doc for docs in chart_documents().values() for doc in docs]
    hooks = {
        (doc["kind"], doc["metadata"]["name"]): found
        for doc in documents
        if (found := _hook(doc)) is not None
    }
    jobs = [doc for doc in documents if doc["kind"] == "Job"]
    assert jobs
    for job in jobs:
        hook = _hook(job)
        assert hook is not None, "the migration runs as a hook"
        events, weight, _ = hook
        assert events >= {"pre-install", "pre-upgrade"}
        references = _pod_references(job["spec"]["template"]["spec"])
        assert ("Secret", values["envSecret"]) in references
        for reference in references - {("Secret", values["envSecret"])}:
            assert reference in hooks, (
                f"the {job['metadata']['name']} hook reads {reference}, a resource of the "
                "release: missing at pre-install, the previous one at pre-upgrade"
            )
            made_by = hooks[reference]
            assert made_by[0] >= events and made_by[1] < weight, (reference, made_by, hook)
    for name, (_, _, policies) in hooks.items():
        assert {"before-hook-creation", "hook-succeeded"} <= policies, name
    later = ChartRenderer({**values}, revision=7).render()
    assert {key for key in hooks} == {
        (doc["kind"], doc["metadata"]["name"])
        for docs in later.values()
        for doc in docs
        if _hook(doc) is not None
    }
    # The copy is the site file the release's own ConfigMap holds.
    by_name = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "ConfigMap"}
    copies = [by_name[name] for kind, name in hooks if kind == "ConfigMap"]
    assert [copy["data"] for copy in copies] == [by_name["rel-safewatch-site"]["data"]]


def _role(argv: list[str]) -> tuple[str, bool]:
    """The role a ``safewatch serve --cluster`` command line runs, and whether its HTTP port is
    the dashboard's (authenticated) rather than the operations-only one: an analyzer with the
    default ``--api process`` serves only ``/healthz``, ``/readyz`` and ``/metrics``, without
    authentication (``ClusterOwner``); any other role or ``--api`` mode serves the dashboard."""
    params = parse_cli(argv).params
    role = str(params["role"])
    return role, not (role == "analyzer" and params["api"] == "process")


def served_without_credentials() -> list[tuple[str, str, bool]]:
    """What is asked of safewatch's HTTP port with no credentials: the chart's probes and
    annotated scrapes, and compose's healthchecks (place, path, dashboard port)."""
    asked: list[tuple[str, str, bool]] = []
    for name, documents in chart_documents().items():
        for document in documents:
            if document["kind"] not in ("Deployment", "StatefulSet"):
                continue
            pod = document["spec"]["template"]
            annotations = pod["metadata"].get("annotations") or {}
            for container in pod["spec"]["containers"]:
                _, dashboard = _role([str(arg) for arg in container["args"]])
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if "httpGet" in container.get(probe, {}):
                        path = container[probe]["httpGet"]["path"]
                        asked.append((f"{name} {probe}", path, dashboard))
                if annotations.get("prometheus.io/scrape") == "true":
                    path = annotations.get("prometheus.io/path", "/metrics")
                    asked.append((f"{name} prometheus.io/scrape", path, dashboard))
    for name, service in load_yaml(DEPLOY / "compose.yaml")["services"].items():
        command, check = service.get("command"), service.get("healthcheck", {}).get("test")
        if isinstance(command, list) and command[:2] == ["safewatch", "serve"] and check:
            _, dashboard = _role([str(arg) for arg in command])
            for path in re.findall(r"https?://[^/\s'\"]+(/[^\s'\"?]*)", " ".join(check)):
                asked.append((f"compose {name} healthcheck", path, dashboard))
    return asked


def test_every_probe_and_annotated_scrape_is_answered_without_credentials(
    tmp_path: Path,
) -> None:
    """A kubelet's probe and an annotation-driven scrape send no credentials, and an API node
    refused its /readyz probe (401): no API pod ever became ready, and Prometheus could not
    scrape it. Each is asked here of the app the process would serve: the dashboard's (the
    authentication gate in front) or an analyzer's operations-only one."""
    from fastapi.testclient import TestClient

    from api_support import FakeOps, make_app, make_dashboard
    from safewatch.api import ApiSettings, create_app
    from safewatch.api.auth.gate import is_public

    asked = served_without_credentials()
    assert {dashboard for _, _, dashboard in asked} == {True, False}  # both kinds are probed
    dashboard_app, _ = make_dashboard(tmp_path)
    apps = {True: make_app(dashboard_app), False: create_app(ApiSettings(), FakeOps())}
    probe = {"User-Agent": "kube-probe/1.29", "Accept": "*/*"}
    for place, path, dashboard in asked:
        with TestClient(apps[dashboard]) as client:
            answer = client.get(path, headers=probe, follow_redirects=False)
        assert answer.status_code == 200, f"{place}: {path} answers {answer.status_code}"
        assert not dashboard or is_public(path), place


def unit_section(unit: Path, section: str) -> dict[str, list[str]]:
    """One section's settings of a systemd unit file, each key's values in order."""
    settings: dict[str, list[str]] = {}
    current = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            current = line
        elif line and not line.startswith(("#", ";")) and current == section:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def unit_service(unit: Path) -> dict[str, list[str]]:
    """The ``[Service]`` settings of a systemd unit, each key's values in order."""
    return unit_section(unit, "[Service]")


def unit_writable(settings: dict[str, list[str]]) -> list[Path]:
    """The folders a unit with ``ProtectSystem=strict`` may write (besides /dev, /proc, /sys):
    its state, cache, logs and runtime directories and its ``ReadWritePaths=``."""
    assert settings["ProtectSystem"] == ["strict"]  # (otherwise more is writable)
    roots = {
        "StateDirectory": "/var/lib",
        "CacheDirectory": "/var/cache",
        "LogsDirectory": "/var/log",
        "RuntimeDirectory": "/run",
    }
    folders = [
        Path(root) / name
        for key, root in roots.items()
        for value in settings.get(key, [])
        for name in value.split()
    ]
    folders += [
        Path(path.lstrip("-+"))
        for value in settings.get("ReadWritePaths", [])
        for path in value.split()
    ]
    if settings.get("PrivateTmp") == ["true"]:
        folders += [Path("/tmp"), Path("/var/tmp")]
    return folders


@pytest.mark.parametrize(
    "unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_each_systemd_unit_signals_only_its_main_process(unit: Path) -> None:
    """With systemd's default KillMode (control-group) ``systemctl stop`` sent SIGTERM to the
    decode workers too; the supervisor restarts a worker stopped from outside (as after a
    crash), so every stop respawned cameras while the server was stopping."""
    settings = unit_service(unit)
    assert settings.get("KillMode") == ["mixed"]
    assert settings.get("KillSignal") == ["SIGTERM"]


@pytest.mark.parametrize(
    "unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name
)
def test_each_systemd_unit_may_write_what_the_example_site_file_writes(
    unit: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ProtectSystem=strict`` makes everything read-only but what the unit names. Without a
    state directory the clip spool (``evidence_dir/.clips-in-progress``, used even with
    evidence in S3), the reveal log, the audit jobs' folder and ``recordings_dir`` of
    deploy/config/site.yaml were read-only, and neither unit could record a clip; the API unit
    had no models folder either (it loads the models too). Each folder is asked of the code
    that uses it, with the site file where the unit reads it (/etc/safewatch)."""
    from types import SimpleNamespace

    from safewatch.api.dashboard import Dashboard, DashboardSettings
    from safewatch.detect.catalogue import CACHE_ENV, cache_dir
    from safewatch.incidents.site_storage import clip_spool, reveal_log
    from safewatch.recording.service import recordings_root

    settings = unit_service(unit)
    (command,) = settings["ExecStart"]
    argv = shlex.split(command)
    config = Path(argv[argv.index("-c") + 1])
    loaded = load_cluster_site(monkeypatch)
    site = type(loaded)(loaded.config, config, config.parent, loaded.secrets)
    storage = site.config.storage
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", "/home/safewatch")
    for value in settings.get("Environment", []):
        name, _, setting = value.partition("=")
        monkeypatch.setenv(name, setting)
    fake_dashboard: Any = SimpleNamespace(settings=DashboardSettings(), site=lambda: site)
    fake_evidence: Any = SimpleNamespace(backend=None)  # evidence in S3, as in the example
    assert storage.evidence_s3 is not None
    written = {
        "the clip spool": clip_spool(storage, site.base_dir),
        "the reveal log": reveal_log(site, fake_evidence).parent,
        "the audit jobs": Dashboard.jobs_dir(fake_dashboard),
        "recordings_dir": recordings_root(site),
        "the models": cache_dir(),
    }
    writable = unit_writable(settings)
    for what, folder in written.items():
        assert any(folder.is_relative_to(root) for root in writable), (
            f"{unit.name}: {what} ({folder}) is read-only; writable: {writable}"
        )


def test_the_units_example_ports_are_free_on_a_host_running_the_example_site(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``systemctl enable --now safewatch-analyzer@8081`` served the analyzer's HTTP on 8081,
    the example site file's ``cluster.video_port``, which the same process then failed to
    bind. Every port a host of the example would bind differs: each example instance's HTTP
    port, the API unit's, and the site's dashboard and video ports; and with several
    instances the unit says to set ``video_port: 0``, a free port that is advertised."""
    from safewatch.api.cluster_video import advertised_url
    from safewatch.runtime.http_server import HttpServer

    site = load_cluster_site(monkeypatch)
    video_port = site.config.cluster.video_port
    bound: list[tuple[str, int]] = []
    for place, argv in systemd_commands():
        if argv[1] != "serve":  # (safewatch retention binds no port)
            continue
        params = parse_cli(argv).params
        port = params["port"] if params["port"] is not None else site.config.runtime.http.port
        bound.append((f"{place} HTTP", int(port)))
        if params["role"] in ("analyzer", "all") and site.config.cluster.secret is not None:
            bound.append((f"{place} video", video_port))
    ports = [port for _, port in bound]
    clashes = {port for port in ports if ports.count(port) > 1 and port != video_port}
    assert not clashes, bound
    assert video_port not in [port for place, port in bound if place.endswith("HTTP")], bound
    (analyzer,) = (DEPLOY / "systemd").glob("safewatch-analyzer@*.service")
    if len(unit_examples(analyzer)) > 1:  # one host binds one video_port only once: 0 then
        assert "video_port: 0" in analyzer.read_text()
        # (0 is a free port, advertised with the port it got)
        from fastapi import FastAPI

        server = HttpServer(FastAPI(), "127.0.0.1", 0)
        try:
            assert server.port != 0
            assert advertised_url(server.url, "10.0.0.5") == f"http://10.0.0.5:{server.port}"
        finally:
            server.stop()


def _pod_annotations(documents: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, str]]:
    """Each workload's pod template annotations, by template file."""
    return {
        name: documents[name][0]["spec"]["template"]["metadata"].get("annotations", {})
        for name in ("analyzer-statefulset.yaml", "api-deployment.yaml")
    }


def test_a_site_file_change_rolls_the_pods_and_a_rules_change_does_not() -> None:
    """The site file is mounted by ``subPath``, which kubelet never refreshes in a running pod:
    without the hash in the pod template a ``helm upgrade`` with a new site file changed the
    ConfigMap and no process ever read it. Rules are a folder mount, refreshed in place and
    hot-reloaded, so they must not restart the analysis."""
    values = load_yaml(CHART / "values.yaml")
    before = _pod_annotations(chart_documents())
    edited = _pod_annotations(chart_documents(site=values["site"] + "# an edit\n"))
    new_rules = {**values["rules"], "extra.yaml": "version: 1\nrules: []\n"}
    rules_only = _pod_annotations(chart_documents(rules=new_rules))
    for name, pod in before.items():
        assert len(pod["checksum/site"]) == 64, name
        assert edited[name]["checksum/site"] != pod["checksum/site"], name
        assert rules_only[name] == pod, name
    mounts = chart_documents()["analyzer-statefulset.yaml"][0]["spec"]["template"]["spec"]
    site_mount = next(m for m in mounts["containers"][0]["volumeMounts"] if m["name"] == "site")
    assert site_mount.get("subPath") == "site.yaml"  # why the hash is needed


def test_each_pods_probes_wait_for_the_servers_answer_and_for_its_start() -> None:
    """The chart's probes had the kubelet's default timeout (1 s), while the HTTP server takes
    up to ``REQUEST_TIMEOUT`` (10 s) to answer /healthz and /readyz by design (then ``hung`` or
    503): a slow but live answer failed the probe, and liveness failures restarted the pod. And
    no startup probe: the port opens only once the models are loaded (downloaded at a pod's
    first start), so the liveness probe restarted a pod still downloading. Each workload now
    has a startup probe on /healthz allowing minutes, and every probe waits longer than the
    server's own bound."""
    from safewatch.runtime.api_process import REQUEST_TIMEOUT

    workloads = 0
    for name, documents in chart_documents().items():
        for document in documents:
            if document["kind"] not in ("Deployment", "StatefulSet"):
                continue
            workloads += 1
            for container in document["spec"]["template"]["spec"]["containers"]:
                place = f"{name} {container['name']}"
                probes = {k: container[k] for k in container if k.endswith("Probe")}
                assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}, place
                for kind, probe in probes.items():
                    assert int(probe.get("timeoutSeconds", 1)) > REQUEST_TIMEOUT, (place, kind)
                startup = probes["startupProbe"]
                assert startup["httpGet"]["path"] == "/healthz", place
                allowed = int(startup.get("periodSeconds", 10)) * int(
                    startup.get("failureThreshold", 3)
                )
                assert allowed >= 300, f"{place}: {allowed} s to start"
    assert workloads == 2


def test_the_clip_spool_and_reveal_log_outlive_a_restarted_container() -> None:
    """With evidence in S3, clips being written and the reveal log of sealed originals live in
    ``evidence_dir`` (``clip_spool``, ``reveal_log``), and a dead analyzer's unfinished clips
    are stored when it starts again (docs/cluster.md). In the chart that folder was the
    container's own writable layer, which Kubernetes does not keep when it restarts a
    container (a crash, a failed liveness probe): the clips and the log were gone. Each pod
    now has it on a volume of its own; compose's API node keeps its reveal log on a named
    volume across re-creation (its analyzers keep the spool in their own files across
    restarts, see compose.yaml)."""
    from types import SimpleNamespace

    from safewatch.api.dashboard import Dashboard, DashboardSettings
    from safewatch.incidents.site_storage import clip_spool, reveal_log

    def written(site_text: str) -> dict[str, Path]:
        storage: Any = SimpleNamespace(
            **{
                key: Path(value) if key.endswith("_dir") else value
                for key, value in yaml.safe_load(site_text)["storage"].items()
            }
        )
        assert storage.evidence_s3 and Path(storage.evidence_dir).is_absolute()
        site: Any = SimpleNamespace(config=SimpleNamespace(storage=storage), base_dir=Path("/x"))
        dashboard: Any = SimpleNamespace(settings=DashboardSettings(), site=lambda: site)
        return {
            "the clip spool": clip_spool(storage, site.base_dir),
            "the reveal log": reveal_log(site, SimpleNamespace(backend=None)),
            "the audit jobs": Dashboard.jobs_dir(dashboard),
        }

    values = load_yaml(CHART / "values.yaml")
    for name in ("analyzer-statefulset.yaml", "api-deployment.yaml"):
        pod = chart_documents()[name][0]["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        (container,) = pod["containers"]
        for what, path in written(values["site"]).items():
            mounts = [
                volumes[mount["name"]]
                for mount in container["volumeMounts"]
                if path.is_relative_to(mount["mountPath"])
            ]
            assert mounts, f"{name}: {what} ({path}) is in the container's writable layer"
            (volume,) = mounts
            assert "persistentVolumeClaim" in volume or (
                "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory"
            ), (name, what, volume)
    site_text = (CONFIG / "site.yaml").read_text()
    api_volumes = load_yaml(DEPLOY / "compose.yaml")["services"]["api"]["volumes"]
    named = [v.split(":")[1] for v in api_volumes if not v.startswith((".", "/"))]
    log = written(site_text)["the reveal log"]
    assert any(log.is_relative_to(target) for target in named), (log, api_volumes)


def test_the_image_runs_as_a_numeric_non_root_user_and_the_pods_say_so() -> None:
    """``USER safewatch`` (a name) made every pod of a cluster that enforces ``runAsNonRoot``
    (the "restricted" Pod Security Standard) fail to start: the kubelet cannot tell that a
    name is not root. The image's USER is now a uid, and every pod of the chart runs as that
    uid, without privilege escalation or capabilities, under the runtime's seccomp profile."""
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, user
    assert f"--uid {uid}" in "\n".join(lines)
    pods = 0
    for name, documents in chart_documents().items():
        for document in documents:
            if document["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
                continue
            pods += 1
            spec = document["spec"]
            pod = (spec["jobTemplate"]["spec"] if "jobTemplate" in spec else spec)["template"]
            pod = pod["spec"]
            context = pod["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["runAsUser"] == int(uid), name
            assert not gid or context["runAsGroup"] == int(gid), name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            for container in pod["containers"]:
                own = container["securityContext"]
                assert own["allowPrivilegeEscalation"] is False, name
                assert own["capabilities"]["drop"] == ["ALL"], name
                assert "add" not in own["capabilities"], name
    assert pods == 4


def unit_install_commands(unit: Path) -> dict[str, list[str]]:
    """The commands a unit's header comments give (``#   command \\`` lines), by name."""
    commands: dict[str, list[str]] = {}
    text = "\n".join(
        line[1:] for line in unit.read_text().splitlines() if line.startswith("#   ")
    ).replace("\\\n", " ")
    for line in text.splitlines():
        argv = shlex.split(line)
        commands[argv[0]] = argv
    return commands


def test_the_systemd_install_makes_the_units_user_with_the_images_uid() -> None:
    """The units run as ``User=safewatch``, which nothing made: systemd refused to start them
    (``217/USER``). And analyzers on several hosts share a ``recordings_dir`` over NFS, where a
    file's owner is a number: each host's own ``useradd`` gave another. The unit's header
    gives the commands, with the uid and gid of the image (deploy/Dockerfile)."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\S+)", dockerfile, re.M)
    uid, _, gid = user.partition(":")
    (analyzer,) = (DEPLOY / "systemd").glob("safewatch-analyzer@*.service")
    commands = unit_install_commands(analyzer)
    useradd, groupadd = commands["useradd"], commands["groupadd"]
    assert useradd[useradd.index("--uid") + 1] == uid
    assert groupadd[groupadd.index("--gid") + 1] == (gid or uid)
    assert useradd[useradd.index("--gid") + 1] == groupadd[-1]
    assert "--system" in useradd
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        settings = unit_service(unit)
        assert settings["User"] == [useradd[-1]] and settings["Group"] == [groupadd[-1]], unit
        assert "217/USER" in unit.read_text(), unit.name  # says why, where one looks first


def test_compose_gives_an_older_images_volumes_to_the_images_user(tmp_path: Path) -> None:
    """Images before the fixed uid 10001 ran as a system user (uid 999), and a named volume
    keeps the owner it was made with: after an upgrade the models, recordings and reveal log
    volumes were not writable by the new image's user. A one-shot service, which the nodes wait
    for, gives every volume they mount to that user; its script is run here on folders owned
    by 999 (as root only: elsewhere the structure alone is checked)."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\S+)", dockerfile, re.M)
    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    owner = services["volume-owner"]
    assert owner["user"] == "0:0" and owner["restart"] == "no"
    named = {
        volume
        for name in ("migrate", "analyzer", "api")
        for volume in services[name]["volumes"]
        if not volume.startswith((".", "/"))
    }
    assert named and named <= set(owner["volumes"]), (named, owner["volumes"])
    for name in ("analyzer", "api"):
        assert services[name]["depends_on"]["volume-owner"] == {
            "condition": "service_completed_successfully"
        }, name
    (script,) = owner["command"]
    script = script.replace("$$", "$")  # compose's escape of a literal $
    assert script.count(user) == 2  # the check and the chown
    targets = [volume.split(":")[1] for volume in owner["volumes"]]
    for target in targets:
        assert target in script, target
    if os.geteuid() != 0:
        return
    old = tmp_path / "old"  # a volume the previous image made
    (old / "yard" / "2026-01-01").mkdir(parents=True)
    (old / "yard" / "2026-01-01" / "a.mp4").write_bytes(b"x")
    for path in (old, *old.rglob("*")):
        os.chown(path, 999, 999)
    fresh = tmp_path / "fresh"  # made by this image, or done by an earlier run
    fresh.mkdir()
    os.chown(fresh, 10001, 10001)
    (fresh / "kept").write_bytes(b"x")  # root's: proves the folder was not walked
    local = script
    for target, folder in zip(targets, (old, fresh, fresh), strict=True):
        local = local.replace(target, str(folder))
    subprocess.run(["/bin/sh", "-c", local], check=True)
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in (old, *old.rglob("*"))}
    assert owners == {(10001, 10001)}
    assert (fresh / "kept").stat().st_uid == 0


def _applies_retention(argv: list[str], place: str) -> None:
    """``argv`` is ``safewatch retention`` with the site file every node reads, not a dry run."""
    assert argv[:2] == ["safewatch", "retention"], (place, argv)
    params = parse_cli(argv).params
    assert params["dry_run"] is False, f"{place}: a dry run removes nothing"
    assert str(params["config"]) == "/etc/safewatch/site.yaml", place


def test_every_deployment_schedules_evidence_retention() -> None:
    """``safewatch serve`` never removes evidence: only ``safewatch retention`` does, and
    nothing in deploy/ ran it, so a long-running site's evidence grew until its disk or bucket
    was full although docs/deployment-storage.md said "daily from cron or a systemd timer".
    systemd has a oneshot unit and a daily timer, the chart a CronJob (on by default) with the
    API pods' image, secret, mounts and security, and compose a one-shot service for the host's
    cron, whose line the docs give."""
    systemd = DEPLOY / "systemd"
    timer = systemd / "safewatch-retention.timer"
    schedule = unit_section(timer, "[Timer]")
    assert schedule["OnCalendar"] == ["daily"]
    assert schedule["Persistent"] == ["true"]  # a day the host was off is made up at boot
    assert schedule["RandomizedDelaySec"]
    (unit_name,) = schedule.get("Unit", [timer.name.replace(".timer", ".service")])
    assert unit_section(timer, "[Install]")["WantedBy"] == ["timers.target"]
    service = unit_service(systemd / unit_name)
    assert service["Type"] == ["oneshot"]
    (command,) = service["ExecStart"]
    argv = shlex.split(command)
    assert argv[0].endswith("/safewatch"), command
    _applies_retention(["safewatch", *argv[1:]], unit_name)
    api = unit_service(systemd / "safewatch-api.service")
    for key in ("User", "Group", "EnvironmentFile", "ProtectSystem", "NoNewPrivileges"):
        assert service[key] == api[key], (unit_name, key)

    values = load_yaml(CHART / "values.yaml")
    assert values["retention"]["enabled"] is True
    rendered = chart_documents()
    (cronjob,) = rendered["retention-cronjob.yaml"]
    assert cronjob["kind"] == "CronJob" and cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["schedule"] == values["retention"]["schedule"]
    assert len(cronjob["spec"]["schedule"].split()) == 5
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    _applies_retention([str(arg) for arg in container["args"]], "helm retention")
    (api_doc,) = rendered["api-deployment.yaml"]
    api_pod = api_doc["spec"]["template"]["spec"]
    (api_container,) = api_pod["containers"]
    assert pod["volumes"] == api_pod["volumes"]
    assert pod["securityContext"] == api_pod["securityContext"]
    for key in ("image", "imagePullPolicy", "securityContext", "envFrom", "env", "volumeMounts"):
        assert container[key] == api_container[key], key
    disabled = chart_documents(retention={**values["retention"], "enabled": False})
    assert disabled["retention-cronjob.yaml"] == []

    services = load_yaml(DEPLOY / "compose.yaml")["services"]
    retention = services["retention"]
    _applies_retention([str(part) for part in retention["command"]], "compose retention")
    assert retention["profiles"] and retention["restart"] == "no"  # not started by `up`
    assert "depends_on" not in retention  # `run` would start (and re-run) them
    compose_text = (DEPLOY / "compose.yaml").read_text()
    docs = (ROOT / "docs" / "deployment-storage.md").read_text()
    (cron,) = re.findall(r"^ *#\s+(\d.*docker compose run --rm retention)$", compose_text, re.M)
    assert cron in docs
    assert timer.name in docs and "retention.enabled" in docs
