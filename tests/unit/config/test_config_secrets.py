"""Configured secrets are masked by value at every edge, whatever characters they hold: a camera
password from ``${ENV}`` goes through the real site loading, the live source's redacted URL, a
log handler, ``/readyz`` and a PDF report, and appears in none of them."""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from api_support import FakeOps, add_users, write_site
from safewatch.api import ApiSettings, create_app
from safewatch.api.dashboard import Dashboard
from safewatch.config.loader import LoadedSite, load_site
from safewatch.config.log_redaction import RedactingFilter
from safewatch.config.secrets import MIN_LENGTH, SECRETS, SecretRegistry, redact_secrets
from safewatch.incidents.site_storage import open_site_storage
from safewatch.ingest.live_source import LiveSource
from safewatch.reports.pdf import _escape
from safewatch.runtime.health import (
    CameraReadiness,
    ComponentHealth,
    FrameCounts,
    Readiness,
)

HOST = "10.0.0.5"
PASSWORDS = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation + " é€",
    min_size=MIN_LENGTH,
    max_size=24,
)
"""Random camera passwords: URL-special characters (/ # ? @ : % & = +) and JSON/HTML ones."""


class _Ops(FakeOps):
    """Operations whose ``/readyz`` shows one camera's (unredacted) state message."""

    message = ""

    def readiness(self) -> Readiness:
        ok = ComponentHealth(ok=True, message="ok")
        camera = CameraReadiness(
            ready=False,
            name="Yard",
            worker="running",
            source="reconnecting",
            message=self.message,
            pid=None,
            restarts=0,
            reconnects=3,
            seconds_since_decoded=None,
            seconds_since_inferred=None,
            seconds_since_evaluated=None,
            fps_target=5.0,
            fps_decoded=0.0,
            fps_analysed=0.0,
            frames=FrameCounts(
                decoded=0, sampled=0, inferred=0, motion_skipped=0, analysed=0, dropped={}
            ),
        )
        return Readiness(
            status="degraded",
            database=ok,
            inference=ok,
            rules=ok,
            site=ok,
            cameras={"yard": camera},
        )


class _Rig:
    """One app for all examples; each example loads its own site into it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = write_site(folder, source=f"rtsp://viewer:${{CAM_PW}}@{HOST}/stream")
        self.site = load_site(self.path, environ={"CAM_PW": "first-password"})
        self.storage = open_site_storage(self.site)
        self.ops = _Ops()
        dashboard = Dashboard.create(lambda: self.site, folder / "rules", self.storage)
        add_users(dashboard)
        token = dashboard.auth.create_token("viewer", "test").token
        app = create_app(ApiSettings(site_name="Test yard"), self.ops, dashboard)
        self.client = TestClient(app)
        self.headers = {"Authorization": f"Bearer {token}"}

    def load(self, password: str) -> LoadedSite:
        self.site = load_site(self.path, environ={"CAM_PW": password})
        return self.site


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Rig]:
    rig = _Rig(tmp_path_factory.mktemp("secrets"))
    with rig.client:
        yield rig
    rig.storage.close()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(password=PASSWORDS)
@example(password="null")  # a JSON literal: the /readyz body holds null values
@example(password="true")
def test_a_random_camera_password_appears_at_no_edge(
    rig: _Rig, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    assume(password.strip("*"))  # "****" would match two adjacent masks
    site = rig.load(password)
    source = site.config.cameras["yard"].source
    assert source == f"rtsp://viewer:{password}@{HOST}/stream"  # the real ${ENV} expansion

    # The live source's URL, which every reconnect warning and state message uses.
    live = LiveSource("yard", source, fps=5)
    assert live.redacted_url == f"rtsp://***:***@{HOST}/stream"

    # A log line that quotes the raw URL and the password alone (a careless call site).
    logger = logging.getLogger("safewatch.test.secrets")
    redacting = RedactingFilter()
    caplog.handler.addFilter(redacting)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            logger.warning("camera yard: cannot open %s: auth failed (%r)", source, password)
    finally:
        caplog.handler.removeFilter(redacting)
    line = caplog.messages[-1]
    assert password not in line
    assert HOST in line or HOST in password

    # /readyz as a viewer sees it, with a state message quoting the raw URL and the password.
    rig.ops.message = f"{source}: 401 Unauthorized for password {password}"
    response = rig.client.get("/readyz", headers=rig.headers)
    try:
        body = response.json()  # still valid JSON
    except ValueError:
        raise AssertionError(f"{password!r}: {response.text}") from None
    assert body["cameras"]["yard"]["source"] == "reconnecting"
    assert all(password not in text for text in _strings(body))

    # A PDF report's free text.
    assert password not in _escape(f"note: the password is {password}")


def test_secrets_in_a_url_are_masked_whole_even_with_special_characters() -> None:
    for password in ("pa/ss", "pa#ss", "pa?ss", "p@ss/w#rd?x"):
        site_url = f"rtsp://admin:{password}@{HOST}:554/live"
        assert LiveSource("c", site_url, fps=1).redacted_url == f"rtsp://***:***@{HOST}:554/live"


def test_env_values_outside_urls_are_masked_by_value(tmp_path: Path) -> None:
    path = write_site(
        tmp_path,
        extra={
            "site": {"name": "${SITE_NAME}", "timezone": "UTC"},
            "storage": {
                "database": "sqlite:///data/db.sqlite",
                "evidence_dir": "data/evidence",
                "evidence_s3": {
                    "bucket": "evidence",
                    "access_key_id": "AKIAEXAMPLE",
                    "secret_access_key": "${S3_SECRET}",
                },
            },
        },
    )
    load_site(path, environ={"S3_SECRET": "s3cr3t+/=key", "SITE_NAME": "North yard"})
    assert redact_secrets("boto says s3cr3t+/=key is wrong") == "boto says *** is wrong"
    assert "s3cr3t" not in redact_secrets(json.dumps({"error": "bad key s3cr3t+/=key"}))


def test_user_names_are_masked_in_urls_but_not_as_words() -> None:
    registry = SecretRegistry()
    registry.add_url("rtsp://admin:hunter22@cam/1")
    assert registry.redact("admin role; hunter22") == "admin role; ***"
    assert redact_secrets("rtsp://admin:x@cam/1").startswith("rtsp://***:***@")


def test_short_values_are_not_masked_by_value() -> None:
    registry = SecretRegistry()
    registry.add(["abc"])
    assert len(registry) == 0
    assert registry.redact("abc") == "abc"


def test_site_file_yaml_quoting_does_not_matter(tmp_path: Path) -> None:
    """A password with YAML-special characters written in the file itself (no ${ENV})."""
    password = 'x: "y" #z'
    folder = tmp_path / "site"
    folder.mkdir()
    path = write_site(folder)
    document = yaml.safe_load(path.read_text())
    document["cameras"]["yard"]["source"] = f"rtsp://viewer:{password}@{HOST}/s"
    path.write_text(yaml.safe_dump(document))
    load_site(path)
    assert password not in redact_secrets(f"failed: {password}")


def test_a_secret_escaped_twice_in_a_json_body_is_masked(rig: _Rig) -> None:
    """An error that quotes a secret as bytes' ``repr`` (``b'Bearer sk-...\\n'``, as httpx does
    for a bad header) is escaped once more by JSON; the check before masking read the JSON text,
    where that form is no form of the secret, and sent the body as it was."""
    secret = "sk-or-v1-abcdef0123456789\n"
    SECRETS.add([secret])
    rig.ops.message = f"Illegal header value {('Bearer ' + secret).encode()!r}"
    response = rig.client.get("/readyz", headers=rig.headers)
    assert "abcdef0123456789" not in response.text
    assert response.json()["cameras"]["yard"]["message"] == "Illegal header value b'Bearer ***'"


def test_the_response_mask_sees_a_repr_quoted_secret_escaped_again_by_json() -> None:
    """The mask checks a body's text in one pass before decoding it: a secret quoted as bytes'
    ``repr`` (``b'Bearer sk-...\\n'``) and then JSON-escaped is a form of its own, registered
    with the others; without it the body went out unmasked."""
    from safewatch.api.redaction import _masked

    registry_had = len(SECRETS)
    secret = "sk-or-v1-fedcba9876543210\n"
    SECRETS.add([secret])
    assert len(SECRETS) > registry_had
    message = f"Illegal header value {('Bearer ' + secret).encode()!r}"
    body = json.dumps({"message": message}).encode()
    masked = _masked(body, {"headers": [(b"content-type", b"application/json")]})
    assert b"fedcba9876543210" not in masked
    assert json.loads(masked) == {"message": "Illegal header value b'Bearer ***'"}
