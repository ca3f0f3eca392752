"""Pydantic models of the site file's ``alerts:`` block: channels, routes, templates, retries.

A *channel* is one place alerts go (an SMTP mailbox list, a webhook, a Slack or Teams incoming
webhook, an MQTT broker). A *route* says which incidents go to which channels: matched by camera,
rule, severity and a schedule in the site's time zone (the night-shift supervisor), with a rate
limit and a digest mode against alert storms, and an escalation when nobody acknowledges the
incident in time. Secrets (SMTP and MQTT passwords, webhook secrets, Slack and Teams URLs, which
are credentials themselves) are ``SecretStr``: never printed, never logged; put them in ``${ENV}``.

Cross-references inside the block (a route names known channels and templates, a template uses
known fields) are checked here; a route's cameras are checked against the site's cameras in
:class:`safewatch.config.site.SiteConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from safewatch.config.durations import Duration
from safewatch.config.rules import ScheduleConfig
from safewatch.domain.events import Severity

__all__ = [
    "AlertEvent",
    "AlertsConfig",
    "ChannelConfig",
    "EmailChannelConfig",
    "MqttChannelConfig",
    "RateLimitConfig",
    "RetryConfig",
    "RouteConfig",
    "RouteMatch",
    "SlackChannelConfig",
    "TeamsChannelConfig",
    "TemplateConfig",
    "WebhookChannelConfig",
    "WitnessAlertConfig",
]

AlertEvent = Literal["opened", "updated", "closed"]
"""Incident changes a route can send: the episode opened, got more confident, or ended."""

Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _ChannelBase(_Strict):
    timeout: Duration = Field(10.0, gt=0, description="Seconds one delivery attempt may take.")


def _email_address(value: str) -> str:
    """``value`` if it is one address (``a@b.example`` or ``Name <a@b.example>``).

    A line break passed the check before and then failed every delivery attempt as an
    unexpected error (it cannot go into a mail header), retried for twenty minutes.
    """
    from email.utils import getaddresses

    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{value!r} contains a line break or control character")
    found = getaddresses([value])  # a quoted display name may hold a comma: "Doe, J" <j@x>
    local, at, domain = found[0][1].rpartition("@") if len(found) == 1 else ("", "", "")
    if not (local and at and domain):
        raise ValueError(f"{value!r} is not one email address (e.g. 'Safety <a@b.example>')")
    return value


class EmailChannelConfig(_ChannelBase):
    """Email over SMTP, with the evidence still attached and a link to the incident."""

    type: Literal["email"]
    host: str = Field(min_length=1, description="SMTP server (your relay or provider).")
    port: Port = Field(587, description="587 for STARTTLS, 465 for implicit TLS, 25 for none.")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="starttls (upgrade after connecting; refused if the server cannot), tls "
        "(implicit TLS, port 465) or none (a trusted local relay only).",
    )
    username: str | None = Field(None, description="Login; omit for a relay without auth.")
    password: SecretStr | None = Field(None, description="Password; put it in ${ENV}.")
    ca_file: Path | None = Field(
        None,
        description="Trust this CA bundle (PEM) for the server's certificate, e.g. an internal "
        "relay's own CA; default: the system's trusted CAs.",
    )
    sender: str = Field(
        alias="from", min_length=3, description="From address, e.g. 'safewatch <a@b.example>'."
    )
    to: tuple[str, ...] = Field(min_length=1, description="Recipients.")
    attach_evidence: bool = Field(True, description="Attach the incident's evidence still.")
    max_attachment_mb: float = Field(
        10.0, gt=0, description="Larger evidence is linked instead of attached."
    )

    @field_validator("sender")
    @classmethod
    def _sender_is_an_address(cls, value: str) -> str:
        return _email_address(value)

    @field_validator("to")
    @classmethod
    def _recipients_are_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_email_address(address) for address in value)

    @model_validator(mode="after")
    def _password_needs_username(self) -> EmailChannelConfig:
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


class WebhookChannelConfig(_ChannelBase):
    """A generic HTTP(S) webhook: JSON body, HMAC-SHA256 signature with a timestamp."""

    type: Literal["webhook"]
    url: SecretStr = Field(description="http(s) URL that receives a POST per alert.")
    secret: SecretStr | None = Field(
        None,
        description="Shared secret for the X-Safewatch-Signature header (HMAC-SHA256 of "
        "'timestamp.body'); omit to send unsigned. Put it in ${ENV}.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (e.g. an API key from ${ENV})."
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        return _http_url(value)


class SlackChannelConfig(_ChannelBase):
    """A Slack incoming webhook (the URL is the credential: keep it in ${ENV})."""

    type: Literal["slack"]
    url: SecretStr = Field(description="Incoming webhook URL, https://hooks.slack.com/...")

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        return _http_url(value)


class TeamsChannelConfig(_ChannelBase):
    """A Microsoft Teams incoming webhook (Workflows); the URL is the credential."""

    type: Literal["teams"]
    url: SecretStr = Field(description="Incoming webhook URL of the channel's workflow.")

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        return _http_url(value)


class MqttChannelConfig(_ChannelBase):
    """An MQTT broker: an event per alert and a retained state per camera and rule.

    Topics: ``PREFIX/CAMERA/RULE/event`` (one JSON message per alert, not retained) and
    ``PREFIX/CAMERA/RULE/state`` (retained ``{"state": "ON"|"OFF", ...}``: is an incident of
    this rule open on this camera). With ``discovery``, Home Assistant finds a binary sensor per
    camera and rule by itself.
    """

    type: Literal["mqtt"]
    host: str = Field(min_length=1, description="Broker host.")
    port: Port = Field(1883, description="1883, or 8883 with TLS.")
    username: str | None = Field(None, description="Login, if the broker wants one.")
    password: SecretStr | None = Field(None, description="Password; put it in ${ENV}.")
    tls: bool = Field(False, description="Connect with TLS.")
    ca_file: Path | None = Field(None, description="CA bundle (PEM) for the broker, with tls.")
    topic_prefix: str = Field(
        "safewatch",
        pattern=r"^[^#+]+$",
        description="First topic level(s); no MQTT wildcards.",
    )
    qos: Literal[0, 1, 2] = Field(1, description="MQTT QoS of every message.")
    client_id: str | None = Field(None, description="Client id; default: safewatch-<random>.")
    discovery: bool = Field(True, description="Publish Home Assistant discovery configs.")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix.")


ChannelConfig = Annotated[
    EmailChannelConfig
    | WebhookChannelConfig
    | SlackChannelConfig
    | TeamsChannelConfig
    | MqttChannelConfig,
    Field(discriminator="type"),
]


def _http_url(value: SecretStr) -> SecretStr:
    """Refuse, when the site file loads, a URL that urllib would fail on only when sending.

    Without these checks ``http://``, a non-numeric port or a space passed ``check-config`` and
    then raised exceptions on every delivery attempt, and ``https://user:pass@host/`` (which
    urllib does not turn into a login) was retried for twenty minutes as a name lookup failure.
    User info is refused rather than turned into a Basic auth header: ``headers`` already sends
    any credential a receiver wants, and one way is simpler to explain. The messages never quote
    the URL: it is a secret (Slack and Teams URLs are credentials themselves).
    """
    url = value.get_secret_value()
    if not url.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError("must not contain spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if "@" in parts.netloc:
        raise ValueError(
            "must not contain user:password@ (it is not sent as a login); send credentials in "
            "headers, e.g. Authorization: Basic ..."
        )
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("has a port that is not a number from 1 to 65535")
    return value


class RouteMatch(_Strict):
    """Which incidents a route takes; every given condition must hold (empty: any)."""

    cameras: tuple[str, ...] = Field((), description="Camera keys; empty: every camera.")
    rules: tuple[str, ...] = Field(
        (), description="Rule ids or shell patterns ('hardhat-*'); empty: every rule."
    )
    severities: tuple[Severity, ...] = Field((), description="Exact severities; empty: any.")
    min_severity: Severity | None = Field(None, description="This severity or higher.")
    schedule: ScheduleConfig | None = Field(
        None,
        description="When the route is active, in the site's time zone (days + between); "
        "e.g. the night shift: between ['22:00', '06:00'].",
    )


class RateLimitConfig(_Strict):
    """At most ``count`` alerts per ``per`` on a route; the rest go out as one summary."""

    count: int = Field(ge=1, description="Alerts sent one by one per window.")
    per: Duration = Field(gt=0, description="Window length, e.g. 10m.")


class RouteConfig(_Strict):
    """Incidents matching ``match`` go to ``channels``."""

    id: Key = Field(description="Route name (used by `safewatch alerts test ROUTE`).")
    match: RouteMatch = Field(default_factory=RouteMatch)
    events: tuple[AlertEvent, ...] = Field(
        ("opened",), min_length=1, description="Incident changes to send: opened, updated, closed."
    )
    channels: tuple[str, ...] = Field(min_length=1, description="Channel keys to send to.")
    template: str | None = Field(None, description="Key of `templates`; default built-in text.")
    rate_limit: RateLimitConfig | None = Field(
        None, description="Storm guard; alerts over the limit are summarised at the window end."
    )
    digest: Duration | None = Field(
        None,
        gt=0,
        description="Send one summary per this period (e.g. 15m) instead of each alert.",
    )
    escalate_after: Duration | None = Field(
        None, gt=0, description="Escalate an incident still unacknowledged after this long."
    )
    escalate_to: tuple[str, ...] = Field((), description="Channel keys escalations go to.")
    suppress_continued: bool = Field(
        False,
        description=(
            "Cluster: send no 'opened' alert for an incident that continues one a lost analyzer "
            "left (the same camera and rule, just after a failover); its 'closed' still goes."
        ),
    )

    @model_validator(mode="after")
    def _escalation_complete(self) -> RouteConfig:
        if (self.escalate_after is None) != (not self.escalate_to):
            raise ValueError("give escalate_after and escalate_to together")
        if self.escalate_after is not None and "opened" not in self.events:
            raise ValueError("an escalation starts when the incident opens: add opened to events")
        for field in ("channels", "escalate_to", "events"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                raise ValueError(f"{field} lists an entry twice")
        return self


class TemplateConfig(_Strict):
    """Message text with ``{field}`` placeholders (``{{`` writes a brace); see docs/alerts.md."""

    subject: str = Field(min_length=1, description="Subject line / title.")
    text: str = Field(min_length=1, description="Body text.")

    @field_validator("subject", "text")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        from safewatch.alerts.templates import check_template

        check_template(value)
        return value


class RetryConfig(_Strict):
    """Exponential backoff with jitter, then the dead-letter state (``safewatch alerts list``)."""

    max_attempts: int = Field(
        400,
        ge=1,
        le=1000,
        description="Attempts before a dead letter; 400 at the default delays retry for about "
        "a day (16-33 h), so a receiver down overnight or over a weekend night loses nothing.",
    )
    initial: Duration = Field(2.0, gt=0, description="Delay after the first failure.")
    max_delay: Duration = Field(300.0, gt=0, description="Longest delay between attempts.")
    jitter: float = Field(
        0.5, ge=0, le=1, description="Each delay is shortened by up to this share, at random."
    )


class WitnessAlertConfig(_Strict):
    """The chain head sent through alert channels: a witness kept outside the site's own
    database and evidence store (``safewatch verify --witness``; docs/alerts.md)."""

    channels: tuple[str, ...] = Field(
        min_length=1, description="Channel keys (a webhook or mailbox the site cannot alter)."
    )
    every: Duration = Field(
        3600.0,
        ge=60,
        description="At most one witness per this long, and only when the chain moved.",
    )


class AlertsConfig(_Strict):
    """The ``alerts:`` block of the site file (see docs/alerts.md)."""

    channels: dict[Key, ChannelConfig] = Field(
        default_factory=dict, description="Where alerts can go, by key."
    )
    routes: tuple[RouteConfig, ...] = Field((), description="Which incidents go where.")
    templates: dict[Key, TemplateConfig] = Field(
        default_factory=dict, description="Message templates by key."
    )
    incident_url: str | None = Field(
        None,
        description="Link to an incident: must contain {incident_id}, its only placeholder, "
        "e.g. 'https://safewatch.example.com/incidents/{incident_id}'.",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    poll_interval: Duration = Field(
        1.0, gt=0, description="How often the dispatcher looks for due alerts (new ones wake it)."
    )
    lease: Duration = Field(
        120.0,
        gt=0,
        description="A delivery claimed by a dispatcher that died is retried after this long.",
    )
    workers: int = Field(
        4,
        ge=1,
        le=64,
        description="Deliveries in flight at once; at most half of them (at least one) to one "
        "channel, so a receiver that hangs does not hold up the others.",
    )
    witness: WitnessAlertConfig | None = Field(
        None, description="Send the tamper-evidence chain's head to these channels regularly."
    )

    @field_validator("incident_url")
    @classmethod
    def _url_template(cls, value: str | None) -> str | None:
        """Only ``{incident_id}`` is filled in a link (``Composer.link`` knows nothing else of
        the incident), and a link without it leads to no incident: accepting every message
        field let ``.../cameras/{camera}/incidents/{incident_id}`` load and render as
        ``.../cameras//incidents/...``. An empty link is no link (``${VAR:-}`` left unset)."""
        if not value:
            return None
        from safewatch.alerts.templates import check_template

        if "incident_id" not in check_template(value, fields=("incident_id",)):
            raise ValueError(
                "the link must contain {incident_id}, e.g. "
                "'https://safewatch.example.com/incidents/{incident_id}'"
            )
        return value

    @model_validator(mode="after")
    def _references(self) -> AlertsConfig:
        seen: set[str] = set()
        for route in self.routes:
            if route.id in seen:
                raise ValueError(f"route {route.id!r} is defined twice")
            seen.add(route.id)
            for name in (*route.channels, *route.escalate_to):
                if name not in self.channels:
                    known = ", ".join(sorted(self.channels)) or "none"
                    raise ValueError(
                        f"route {route.id!r} names channel {name!r}, which is not defined "
                        f"(defined: {known})"
                    )
            if route.template is not None and route.template not in self.templates:
                known = ", ".join(sorted(self.templates)) or "none"
                raise ValueError(
                    f"route {route.id!r} names template {route.template!r}, which is not "
                    f"defined (defined: {known})"
                )
        for name in self.witness.channels if self.witness is not None else ():
            if name not in self.channels:
                known = ", ".join(sorted(self.channels)) or "none"
                raise ValueError(
                    f"witness names channel {name!r}, which is not defined (defined: {known})"
                )
        return self

    def route(self, route_id: str) -> RouteConfig | None:
        """The route with this id, if any."""
        return next((route for route in self.routes if route.id == route_id), None)
