"""The site file's ``cluster:`` block, and what ``serve --cluster`` demands of the rest of it.

Under ``safewatch serve --cluster`` several analyzer processes (on one host or many) share the
site's cameras: each camera is owned by one analyzer through a lease in the database
(:mod:`safewatch.cluster`). Everything a camera's owner writes must therefore be readable by the
one that takes it over: the database must be a server (PostgreSQL), not a SQLite file on one
host, and evidence must sit in a bucket or in a folder the site file declares shared (NFS, a
mounted volume every analyzer sees). :func:`cluster_refusal` says which of these a site file
breaks, with the file and line, before anything starts.

Per-analyzer settings (``capacity``, ``labels``) usually differ between hosts while the site file
is shared: write them as ``${VARIABLES}`` and set those per host.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from safewatch.errors import ConfigError

if TYPE_CHECKING:
    from safewatch.config.loader import LoadedSite

__all__ = ["ClusterConfig", "check_labels", "cluster_refusal", "is_placeholder"]

_LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,62}$"
MIN_SECRET_LENGTH = 16
"""Shortest ``cluster.secret`` accepted (an HMAC key that can be guessed is no key)."""


class ClusterConfig(BaseModel):
    """How this site's analyzers share its cameras under ``safewatch serve --cluster``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lease_seconds: float = Field(
        10.0,
        ge=1.0,
        le=300.0,
        description="How long a camera's lease lasts without renewal: a dead analyzer's cameras "
        "move after about this long. Shorter moves faster and costs more database writes.",
    )
    capacity: int = Field(
        1,
        ge=1,
        le=10_000,
        description="This analyzer's weight in placement: one with capacity 2 gets about twice "
        "the cameras of one with capacity 1 (set it per host with ${VARIABLE}).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="This analyzer's labels, e.g. {gpu: 'true', building: b}; a camera with "
        "`labels` runs only on analyzers that have all of them with the same values.",
    )

    job_slots: int = Field(
        1,
        ge=0,
        le=64,
        description="Audit and backtest jobs this analyzer runs at once, claimed from the "
        "cluster's job table (a job uses the cores its detector gets; 0: this analyzer runs "
        "none). Nodes of role api never run jobs.",
    )

    redis_url: str | None = Field(
        None,
        pattern=r"^rediss?://[^\s]+$",
        description="Redis for what is lossy or re-readable (redis://host:6379/0): the incident "
        "change stream dashboards follow, live overlays of cameras analysed elsewhere, export "
        "workers. null: API nodes follow incident changes from the database every second and "
        "show boxes only of cameras analysed in their own process (docs/cluster.md).",
    )
    redis_namespace: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The part of every Redis key and channel that is this site's "
        "(safewatch:<namespace>:incidents, safewatch:<namespace>:live:<camera>), so sites "
        "sharing one Redis never see each other's messages. null: the site's name, "
        "percent-encoded. Set it to keep the keys when renaming the site, or to tell apart two "
        "sites of the same name (docs/cluster.md).",
    )

    secret: SecretStr | None = Field(
        None,
        description="Shared by every node (write ${SAFEWATCH_CLUSTER_SECRET}): an API node signs "
        "with it the short-lived grant that lets it relay the live video of a camera another "
        "analyzer owns. null: analyzers serve no video to other nodes, and an API node shows "
        "only the video of cameras analysed in its own process (docs/cluster.md).",
    )
    advertise_host: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.:_\[\]-]{1,253}$",
        description="Host name or address other nodes reach this one at, for live video "
        "(analyzer-3.plant.local). Default: the address it listens on, or its host name when "
        "that is 0.0.0.0 or ::.",
    )
    video_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Analyzer role: the port its live video is served to API nodes on (with "
        "cluster.secret); 0 takes a free one (advertised in the database, so API nodes find "
        "it). Role all serves it on this port too, never on its dashboard's port.",
    )

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be {MIN_SECRET_LENGTH} characters or more (a random string, the same on "
                "every node: it signs the grants of the live video relay)"
            )
        if is_placeholder(value.get_secret_value()):
            raise ValueError(
                "is a placeholder from an example, not a secret: set a random string of "
                f"{MIN_SECRET_LENGTH} characters or more, the same on every node (e.g. "
                "`openssl rand -hex 32`; anyone who knows it can sign grants for raw video)"
            )
        return value


PLACEHOLDER_SECRETS = frozenset(
    {
        "change-this-cluster-secret",  # deploy/compose.yaml's default before it was required
        "safewatch-secret",  # deploy/compose.yaml's MinIO password default
        "your-cluster-secret",
        "cluster-secret-here",
    }
)
"""Example values that must never sign grants (compared ignoring case)."""


def is_placeholder(secret: str) -> bool:
    """Whether ``secret`` is an example value: one of :data:`PLACEHOLDER_SECRETS`, or one that
    says to change or replace it (``change-me...``, ``changeme...``, ``replace...``)."""
    folded = secret.strip().lower()
    return folded in PLACEHOLDER_SECRETS or folded.startswith(
        ("change-this", "change-me", "changeme", "change_me", "replace-", "replace_me", "xxxx")
    )


def check_labels(value: dict[str, str]) -> dict[str, str]:
    """Label keys and values are short identifiers (shared with the cameras' ``labels``)."""
    for key, label in value.items():
        for part in (key, label):
            if not re.match(_LABEL_PATTERN, part):
                raise ValueError(
                    f"label {key}: {label}: {part!r} must be letters, digits and . _ : / - "
                    "only, up to 63 characters"
                )
    return value


def _recording_cameras(site: LoadedSite) -> list[str]:
    """The enabled cameras with recording on (file cameras included: they are refused alike,
    which keeps the rule simple to state)."""
    return sorted(
        key
        for key, camera in site.config.cameras.items()
        if camera.enabled and camera.recording is not None and camera.recording.enabled
    )


def cluster_refusal(site: LoadedSite) -> ConfigError | None:
    """Why ``site`` cannot run in cluster mode (with the file and line), or ``None``.

    Refused: a SQLite database (one host's file; leases and fencing need one database every
    analyzer writes to) and evidence in a local folder not declared shared
    (``storage.evidence_shared: true``), since a camera's next owner must finish and read its
    clips; and recording cameras into a folder not declared shared (``storage.recordings_shared:
    true``): a camera's next owner continues its recording there and every API node serves it.
    Read again from the file for the line numbers the validated model no longer has.
    """
    from safewatch.config.loader import read_document

    storage = site.config.storage
    problem: tuple[tuple[str, ...], str] | None = None
    if not storage.database.startswith("postgresql"):
        scheme = storage.database.split(":", 1)[0]
        problem = (
            ("storage", "database"),
            f"cluster mode needs a PostgreSQL database that every analyzer reaches, not "
            f"{scheme} (leases and fencing live there)",
        )
    elif storage.evidence_s3 is None and not storage.evidence_shared:
        problem = (
            ("storage", "evidence_dir"),
            "cluster mode needs evidence every analyzer can reach: set storage.evidence_s3, or "
            "storage.evidence_shared: true if this folder is shared (NFS, a common volume)",
        )
    elif not storage.recordings_shared and (recording := _recording_cameras(site)):
        problem = (
            ("storage", "recordings_dir"),
            f"cluster mode records cameras {recording} only into a folder every node reaches "
            "(a camera's next owner continues its recording, any API node serves it): set "
            "storage.recordings_shared: true if this folder is shared (NFS, a common volume), or "
            "turn their recording off",
        )
    if problem is None:
        return None
    path, message = problem
    try:
        line: int | None = read_document(site.path, interpolate=False).line_of(path)
    except ConfigError:
        line = None
    return ConfigError(message, file=str(site.path), line=line, field=".".join(path))
