"""The grants an API node signs so an analyzer serves it a camera's live video
(:mod:`safewatch.api.cluster_video`): only this cluster's secret, only the camera and mode named,
only until it expires; and the URL an analyzer advertises."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from safewatch.api.auth.gate import is_public
from safewatch.api.cluster_video import (
    INTERNAL_PREFIX,
    ClusterVideo,
    GrantRefused,
    NoOwner,
    advertised_url,
    sign_grant,
    verify_grant,
)

SECRET = "a-cluster-secret-of-32-characters"


def test_a_grant_names_camera_mode_and_user() -> None:
    token = sign_grant(SECRET, "cam 1/é", "raw", "alice", now=1000.0)
    grant = verify_grant(SECRET, token, "cam 1/é", now=1010.0)
    assert (grant.camera_id, grant.mode, grant.user) == ("cam 1/é", "raw", "alice")
    assert grant.expires == pytest.approx(1030.0)


@pytest.mark.parametrize(
    ("token", "camera", "now", "message"),
    [
        (None, "cam1", 1000.0, "header is required"),
        ("", "cam1", 1000.0, "header is required"),
        (sign_grant("another-secret-of-enough-length", "cam1", "blurred", "a", now=1000.0),
         "cam1", 1000.0, "not signed"),
        (sign_grant(SECRET, "cam2", "blurred", "a", now=1000.0), "cam1", 1000.0, "for camera"),
        (sign_grant(SECRET, "cam1", "blurred", "a", now=1000.0), "cam1", 1031.0, "expired"),
        ("garbage", "cam1", 1000.0, "not signed"),
        ("a.b.c", "cam1", 1000.0, "malformed"),
    ],
)  # fmt: skip
def test_a_bad_grant_is_refused_with_the_reason(
    token: str | None, camera: str, now: float, message: str
) -> None:
    with pytest.raises(GrantRefused, match=message):
        verify_grant(SECRET, token, camera, now=now)


def test_a_blurred_grant_cannot_be_turned_into_a_raw_one() -> None:
    payload, signature = sign_grant(SECRET, "cam1", "blurred", "bob", now=1000.0).split(".")
    raw_payload, _ = sign_grant(SECRET, "cam1", "raw", "bob", now=1000.0).split(".")
    with pytest.raises(GrantRefused, match="not signed"):
        verify_grant(SECRET, f"{raw_payload}.{signature}", "cam1", now=1000.0)
    assert verify_grant(SECRET, f"{payload}.{signature}", "cam1", now=1000.0).mode == "blurred"


def test_the_internal_video_path_passes_the_session_gate_only_for_its_prefix() -> None:
    assert is_public(f"{INTERNAL_PREFIX}cam1/video")
    assert not is_public("/internal/v1/other")
    assert not is_public("/api/v1/ws/cameras/cam1/video")


def test_the_advertised_url_names_a_reachable_host() -> None:
    assert advertised_url("http://127.0.0.1:8081", None) == "http://127.0.0.1:8081"
    assert advertised_url("http://0.0.0.0:8081", "analyzer-3") == "http://analyzer-3:8081"
    wildcard = advertised_url("http://0.0.0.0:8081", None)
    assert "0.0.0.0" not in wildcard and wildcard.endswith(":8081")
    assert advertised_url("http://[::1]:9", None) == "http://[::1]:9"


def test_an_unreachable_database_is_a_transient_no_owner() -> None:
    """(A relay that shows video keeps it through a database hiccup: it waits for news.)"""
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        found = ClusterVideo(engine, SECRET).owner("cam1")
    finally:
        engine.dispose()
    assert isinstance(found, NoOwner) and found.transient and found.code == 4503
    assert found.reason == "database unreachable: OperationalError"
    missing = ClusterVideo(engine, None).owner("cam1")
    assert isinstance(missing, NoOwner) and not missing.transient
