"""The grants an API node signs so an analyzer serves it a camera's live video
(:mod:`safewatch.api.cluster_video`): only this cluster's secret, only the camera and mode named,
only for the analyzer named, once (nonce), only until it expires (with the clock skew allowed);
and the URL an analyzer advertises."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from safewatch.api.auth.gate import is_public
from safewatch.api.cluster_video import (
    CLOCK_SKEW_SECONDS,
    GRANT_SECONDS,
    INTERNAL_PREFIX,
    ClusterVideo,
    GrantRefused,
    Nonces,
    NoOwner,
    advertised_url,
    sign_grant,
    verify_grant,
)

SECRET = "a-cluster-secret-of-32-characters"


def test_a_grant_names_analyzer_camera_mode_user_and_a_fresh_nonce() -> None:
    token = sign_grant(SECRET, "a1", "cam 1/é", "raw", "alice", now=1000.0)
    grant = verify_grant(SECRET, token, "cam 1/é", "a1", now=1009.0)
    assert (grant.analyzer_id, grant.camera_id, grant.mode, grant.user) == (
        "a1",
        "cam 1/é",
        "raw",
        "alice",
    )
    assert grant.expires == pytest.approx(1000.0 + GRANT_SECONDS) and GRANT_SECONDS == 10.0
    again = verify_grant(SECRET, sign_grant(SECRET, "a1", "cam 1/é", "raw", "alice", now=1000.0),
                         "cam 1/é", "a1", now=1000.0)  # fmt: skip
    assert len(grant.nonce) >= 16 and again.nonce != grant.nonce


def _grant(analyzer: str = "a1", camera: str = "cam1", **options: float) -> str:
    return sign_grant(SECRET, analyzer, camera, "blurred", "a", now=1000.0, **options)


@pytest.mark.parametrize(
    ("token", "camera", "now", "message"),
    [
        (None, "cam1", 1000.0, "header is required"),
        ("", "cam1", 1000.0, "header is required"),
        (sign_grant("another-secret-of-enough-length", "a1", "cam1", "blurred", "a", now=1000.0),
         "cam1", 1000.0, "not signed"),
        (_grant(camera="cam2"), "cam1", 1000.0, "for camera 'cam2', not 'cam1'"),
        (_grant(analyzer="a2"), "cam1", 1000.0, "for analyzer 'a2', not 'a1'"),
        # expiry 1010; this node's clock may be up to 5 s behind or ahead of the signer's
        (_grant(), "cam1", 1014.9, None),
        (_grant(), "cam1", 1015.1, "expired 5.1 s ago by this node's clock"),
        (_grant(), "cam1", 994.9, "longer than a grant lives"),
        (_grant(seconds=60), "cam1", 1000.0, "longer than a grant lives"),
        ("garbage", "cam1", 1000.0, "not signed"),
        ("a.b.c", "cam1", 1000.0, "malformed"),
    ],
)  # fmt: skip
def test_a_bad_grant_is_refused_with_the_reason(
    token: str | None, camera: str, now: float, message: str | None
) -> None:
    if message is None:
        assert verify_grant(SECRET, token, camera, "a1", now=now).camera_id == camera
        return
    with pytest.raises(GrantRefused, match=message):
        verify_grant(SECRET, token, camera, "a1", now=now)


def test_a_blurred_grant_cannot_be_turned_into_a_raw_one() -> None:
    payload, signature = _grant().split(".")
    raw_payload, _ = sign_grant(SECRET, "a1", "cam1", "raw", "a", now=1000.0).split(".")
    with pytest.raises(GrantRefused, match="not signed"):
        verify_grant(SECRET, f"{raw_payload}.{signature}", "cam1", "a1", now=1000.0)
    assert verify_grant(SECRET, f"{payload}.{signature}", "cam1", "a1", now=1000.0).mode == (
        "blurred"
    )


def test_a_nonce_is_accepted_once_and_forgotten_after_its_grant_expires() -> None:
    clock = [1000.0]
    nonces = Nonces(limit=3, clock=lambda: clock[0])
    first = verify_grant(SECRET, _grant(), "cam1", "a1", now=1000.0)
    nonces.use(first)
    with pytest.raises(GrantRefused, match="already used"):
        nonces.use(first)
    for _ in range(2):
        nonces.use(verify_grant(SECRET, _grant(), "cam1", "a1", now=1000.0))
    with pytest.raises(GrantRefused, match="more than 3 grants in flight"):
        nonces.use(verify_grant(SECRET, _grant(), "cam1", "a1", now=1000.0))
    # past expiry + skew (1015) the grant is refused as expired anyway: its nonce is forgotten
    clock[0] = 1000.0 + GRANT_SECONDS + CLOCK_SKEW_SECONDS + 0.1
    later = verify_grant(SECRET, _grant(), "cam1", "a1", now=1000.0)
    nonces.use(later)
    assert len(nonces) == 1


def test_the_internal_video_path_is_never_public_on_a_dashboard() -> None:
    """(An analyzer serves it on a listener of its own: the dashboard's gate knows no grant.)"""
    assert not is_public(f"{INTERNAL_PREFIX}cam1/video")
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
