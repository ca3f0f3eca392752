"""The site file's alerts block: validation with file:line errors, secrets never shown,
templates checked at load, routing by camera, rule, severity, event and schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from alerts_support import T0, make_incident, make_site
from pydantic import ValidationError

from safewatch.alerts.routing import Router
from safewatch.alerts.templates import DEFAULT_TEMPLATES, FIELDS, check_template, render
from safewatch.config.loader import load_site
from safewatch.domain import Severity
from safewatch.errors import ConfigError

CHANNELS = {
    "mail": {
        "type": "email",
        "host": "smtp.example.com",
        "username": "alerts",
        "password": "hunter2-smtp",
        "from": "safewatch <alerts@example.com>",
        "to": ["safety@example.com"],
    },
    "hook": {"type": "webhook", "url": "https://hooks.example.com/x", "secret": "hmac-secret"},
    "slack": {"type": "slack", "url": "https://hooks.slack.com/services/T0/B0/tok3n"},
    "ha": {"type": "mqtt", "host": "broker", "password": "mqtt-pass", "username": "sw"},
}


def test_a_full_block_loads_from_yaml_with_env_secrets(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        """
version: 1
site: {name: Yard, timezone: Europe/Berlin}
models: {coco: {path: x.onnx}}
cameras: {yard: {source: a.mp4, models: [coco]}}
alerts:
  incident_url: "https://sw.example/incidents/{incident_id}"
  channels:
    mail: {type: email, host: smtp, username: a, password: "${SMTP_PASSWORD}",
           from: "a@b.example", to: [c@d.example]}
    hook: {type: webhook, url: "https://h.example/in", secret: "${HOOK_SECRET}"}
  templates:
    short: {subject: "{severity}: {rule}", text: "{message} {{literal}} {link}"}
  routes:
    - id: night-shift
      match: {cameras: [yard], min_severity: high, schedule: {between: ["22:00", "06:00"]}}
      channels: [mail]
      template: short
      rate_limit: {count: 5, per: 10m}
      escalate_after: 15m
      escalate_to: [hook]
"""
    )
    env = {"SMTP_PASSWORD": "s3cret-pw", "HOOK_SECRET": "hmac-key"}
    alerts = load_site(site, environ=env).config.alerts
    route = alerts.routes[0]
    assert route.rate_limit is not None and route.rate_limit.per == 600.0
    assert route.escalate_after == 900.0
    assert route.events == ("opened",)
    mail = alerts.channels["mail"]
    assert mail.type == "email" and mail.password is not None
    assert mail.password.get_secret_value() == "s3cret-pw"
    assert "s3cret-pw" not in repr(alerts) and "hmac-key" not in repr(alerts)


@pytest.mark.parametrize(
    "address", ['"Doe, John" <john@plant.example>', "Safety <a@b.example>", "user@bücher.de"]
)
def test_addresses_in_their_usual_forms_load(address: str, tmp_path: Path) -> None:
    mail = {**CHANNELS["mail"], "to": [address], "from": address}
    make_site({"channels": {**CHANNELS, "mail": mail}}, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"routes": [{"id": "r", "channels": ["pager"]}]}, "names channel 'pager'"),
        ({"routes": [{"id": "r", "channels": ["hook"], "template": "t"}]}, "template 't'"),
        (
            {"routes": [{"id": "r", "channels": ["hook"], "escalate_after": "5m"}]},
            "escalate_after and escalate_to together",
        ),
        ({"routes": [{"id": "r", "channels": ["hook", "hook"]}]}, "lists an entry twice"),
        (
            {
                "routes": [
                    {
                        "id": "r",
                        "channels": ["hook"],
                        "events": ["closed"],
                        "escalate_after": "5m",
                        "escalate_to": ["mail"],
                    }
                ]
            },
            "add opened to events",
        ),
        (
            {"routes": [{"id": "r", "channels": ["hook"]}, {"id": "r", "channels": ["hook"]}]},
            "defined twice",
        ),
        ({"templates": {"t": {"subject": "{camera.__class__}", "text": "x"}}}, "unknown place"),
        ({"templates": {"t": {"subject": "a { b", "text": "x"}}}, "stray"),
        ({"incident_url": "https://x/{id}"}, "unknown placeholder {id}"),
        # Only {incident_id} is filled in a link: {camera} rendered as "cameras//incidents/..."
        (
            {"incident_url": "https://x/cameras/{camera}/incidents/{incident_id}"},
            r"unknown placeholder \{camera\}; known: \{incident_id\}",
        ),
        ({"incident_url": "https://x/incidents/latest"}, r"must contain \{incident_id\}"),
        (
            {"channels": {"hook": {"type": "webhook", "url": "ftp://x"}}},
            "http:// or https://",
        ),
        ({"channels": {"hook": {"type": "webhook", "url": "http://"}}}, "has no host"),
        (
            {"channels": {"hook": {"type": "webhook", "url": "http://h:abc/x"}}},
            "port that is not a number",
        ),
        (
            {"channels": {"hook": {"type": "webhook", "url": "http://h:0/x"}}},
            "port that is not a number",
        ),
        ({"channels": {"hook": {"type": "webhook", "url": "http://h/a b"}}}, "spaces"),
        ({"channels": {"hook": {"type": "webhook", "url": "http://h/a\tb"}}}, "control char"),
        (
            {"channels": {"hook": {"type": "webhook", "url": "https://u:pw@h/x"}}},
            "must not contain user:password@ .* headers",
        ),
        ({"channels": {"s": {"type": "slack", "url": "https://[::1/x"}}}, "not a valid URL"),
        ({"channels": {"t": {"type": "teams", "url": "https://u@h/x"}}}, "user:password@"),
        (
            {"channels": {"q": {"type": "mqtt", "host": "b", "topic_prefix": "a/#"}}},
            "pattern",
        ),
        ({"channels": {"x": {"type": "pager"}}}, "does not match any of the expected tags"),
        (  # a line break cannot go into a mail header: every delivery failed, for 20 minutes
            {"channels": {"mail": {**CHANNELS["mail"], "to": ["safety@example.com\nbcc@x.org"]}}},
            "contains a line break",
        ),
        (
            {"channels": {"mail": {**CHANNELS["mail"], "to": ["safety team"]}}},
            "not one email address",
        ),
        (
            {"channels": {"mail": {**CHANNELS["mail"], "from": "a@b.example, c@d.example"}}},
            "not one email address",
        ),
    ],
)
def test_mistakes_are_refused_with_a_reason(
    change: dict[str, object], message: str, tmp_path: Path
) -> None:
    alerts: dict[str, object] = {"channels": dict(CHANNELS), **change}
    with pytest.raises(ValidationError, match=message):
        make_site(alerts, tmp_path)


def test_an_empty_incident_url_is_no_link(tmp_path: Path) -> None:
    """``incident_url: "${SAFEWATCH_INCIDENT_URL:-}"`` (a link the deployment may set) was
    refused for lacking {incident_id} where the variable is unset; empty means no link."""
    site = make_site({"channels": dict(CHANNELS), "incident_url": ""}, tmp_path)
    assert site.config.alerts is not None and site.config.alerts.incident_url is None


def test_a_route_must_match_a_known_camera(tmp_path: Path) -> None:
    alerts = {"channels": CHANNELS, "routes": [{"id": "r", "channels": ["hook"]}]}
    alerts["routes"][0]["match"] = {"cameras": ["gate"]}  # type: ignore[index]
    with pytest.raises(ValidationError, match="camera 'gate', which is not defined"):
        make_site(alerts, tmp_path)


def test_config_errors_in_a_file_name_the_line_and_never_the_secret(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "version: 1\nmodels: {coco: {path: x.onnx}}\ncameras: {yard: {source: a.mp4, models: "
        "[coco]}}\nalerts:\n  channels:\n    hook: {type: webhook, url: '${HOOK_URL}', "
        "secret: '${HOOK_SECRET}'}\n"
    )
    env = {"HOOK_URL": "gopher://u:pw@x", "HOOK_SECRET": "topsecret"}
    with pytest.raises(ConfigError) as caught:
        load_site(site, environ=env)
    text = caught.value.format()
    assert "site.yaml:6" in text and "http:// or https://" in text
    assert "${HOOK_URL}" in text  # the reference as written, never the value
    assert "topsecret" not in text and "u:pw" not in text


def test_a_ca_file_that_is_not_there_is_refused_when_the_site_loads(tmp_path: Path) -> None:
    """Before, it loaded (and passed check-config); every delivery then failed on the missing
    file as a transient error and was retried for about ten minutes."""
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "relay-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    channels = {
        "mail": {**CHANNELS["mail"], "ca_file": "certs/relay-ca.pem"},  # relative to the site
        "ha": {**CHANNELS["ha"], "tls": True, "ca_file": "certs/broker-ca.pem"},
    }
    site = tmp_path / "site.yaml"
    document: dict[str, Any] = {
        "version": 1,
        "site": {"name": "Yard", "timezone": "Europe/Berlin"},
        "models": {"coco": {"path": "x.onnx"}},
        "cameras": {"yard": {"source": "a.mp4", "models": ["coco"]}},
        "alerts": {"channels": channels, "routes": [{"id": "r", "channels": ["mail", "ha"]}]},
    }
    site.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_site(site)
    text = str(caught.value)
    assert "alerts.channels.ha.ca_file" in text
    assert str(tmp_path / "certs" / "broker-ca.pem") in text and "not found" in text
    assert "relay-ca.pem" not in text  # the one that is there is fine
    document["alerts"]["channels"]["ha"]["ca_file"] = str(tmp_path / "certs" / "relay-ca.pem")
    site.write_text(yaml.safe_dump(document, sort_keys=False))
    assert load_site(site).config.alerts.channels["ha"].type == "mqtt"


def test_config_errors_never_show_a_secret_typed_into_the_file(tmp_path: Path) -> None:
    """Secret fields (a Slack URL, a password) written literally, and malformed, are still
    secrets: the error says what is wrong without the value; a ${VAR} reference alone is shown."""
    site = tmp_path / "site.yaml"
    site.write_text(
        "version: 1\nmodels: {coco: {path: x.onnx}}\ncameras: {yard: {source: a.mp4, models: "
        "[coco]}}\nalerts:\n  channels:\n"
        "    chat: {type: slack, url: 'hooks.slack.com/services/T0/B0/LITERALSECRET9'}\n"
        "    mail: {type: email, host: smtp, username: a, password: 86753091, from: a@b.example,"
        " to: [c@d.example]}\n"
        "    team: {type: teams, url: '${TEAMS_URL:-nothttp-DEFAULTSECRET}'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_site(site, environ={})
    text = caught.value.format()
    assert "site.yaml:6: alerts.channels.chat.url: must be an http:// or https:// URL" in text
    assert "site.yaml:7: alerts.channels.mail.password" in text
    assert "site.yaml:8: alerts.channels.team.url" in text
    assert text.count("(the value is a secret: not shown)") == 3
    for secret in ("LITERALSECRET9", "86753091", "DEFAULTSECRET"):
        assert secret not in text


# -- templates ------------------------------------------------------------------------------------


def test_every_default_template_uses_only_known_fields() -> None:
    for template in DEFAULT_TEMPLATES.values():
        check_template(template.subject)
        check_template(template.text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{rule} on {camera}", "hardhat on yard"),
        ("{{literal}} {rule}", "{literal} hardhat"),
        ("{rule}\n{link}", "hardhat"),  # an empty last line is dropped
        ("{zone}|{rule}", "|hardhat"),
    ],
)
def test_render(text: str, expected: str) -> None:
    fields = dict.fromkeys(FIELDS, "") | {"rule": "hardhat", "camera": "yard"}
    check_template(text)
    assert render(text, fields) == expected


# -- routing --------------------------------------------------------------------------------------

ROUTES = {
    "channels": {"hook": CHANNELS["hook"]},
    "routes": [
        {"id": "everything", "channels": ["hook"]},
        {"id": "yard-only", "channels": ["hook"], "match": {"cameras": ["yard"]}},
        {"id": "hats", "channels": ["hook"], "match": {"rules": ["hardhat-*"]}},
        {"id": "urgent", "channels": ["hook"], "match": {"min_severity": "high"}},
        {"id": "exactly-low", "channels": ["hook"], "match": {"severities": ["low"]}},
        {"id": "endings", "channels": ["hook"], "events": ["closed"]},
        {
            "id": "night-shift",
            "channels": ["hook"],
            "match": {"schedule": {"days": ["mon"], "between": ["22:00", "06:00"]}},
        },
    ],
}


@pytest.mark.parametrize(
    ("camera", "rule", "severity", "event", "at", "expected"),
    [
        # T0 is Tuesday 23:13 in Berlin: not Monday's night shift.
        ("yard", "hardhat-required", Severity.HIGH, "opened", T0, {"yard-only", "hats", "urgent"}),
        ("dock", "no-entry", Severity.LOW, "opened", T0, {"exactly-low"}),
        ("dock", "no-entry", Severity.CRITICAL, "opened", T0, {"urgent"}),
        ("dock", "no-entry", Severity.MEDIUM, "closed", T0, {"endings"}),
        # Monday 23:00 and Tuesday 05:59 Berlin are Monday's night shift; Tuesday 06:00 is not.
        ("dock", "x", Severity.MEDIUM, "opened", T0 - 86400 - 780, {"night-shift"}),
        ("dock", "x", Severity.MEDIUM, "opened", T0 - 62060, {"night-shift"}),
        ("dock", "x", Severity.MEDIUM, "opened", T0 - 62000, set()),
    ],
)
def test_routes_for(
    camera: str,
    rule: str,
    severity: Severity,
    event: str,
    at: float,
    expected: set[str],
    tmp_path: Path,
) -> None:
    router = Router(make_site(ROUTES, tmp_path).config.alerts, ZoneInfo("Europe/Berlin"))
    incident = make_incident(camera=camera, rule=rule, severity=severity)
    got = {route.id for route in router.routes_for(incident, event, at)}
    if event == "opened":
        expected = expected | {"everything"}
    assert got == expected


def test_the_example_in_docs_alerts_md_is_a_valid_alerts_block(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "alerts.md"
    block = docs.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    site = tmp_path / "site.yaml"
    site.write_text(
        "version: 1\nmodels: {coco: {path: x.onnx}}\n"
        "cameras: {yard: {source: a.mp4, models: [coco]}}\n" + block
    )
    names = ("SMTP_PASSWORD", "SAFEWATCH_WEBHOOK_SECRET", "OPS_API_KEY", "MQTT_PASSWORD")
    env = {name: "x" for name in names}
    env |= {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/x", "TEAMS_WEBHOOK_URL": "https://t/x"}
    alerts = load_site(site, environ=env).config.alerts
    assert [route.id for route in alerts.routes] == [
        "everything-to-ops",
        "night-shift",
        "yard-digest",
    ]
    assert set(alerts.channels) == {
        "safety-mail",
        "ops-hook",
        "shift-slack",
        "managers-teams",
        "home-assistant",
    }
