"""How an API node finds the owner of a camera's live video, and why it says there is none
(:meth:`safewatch.api.cluster_video.ClusterVideo.owner`), on a real PostgreSQL: the lease's
expiry is the database's clock, and the owner's advertised URL comes with its heartbeat."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from safewatch.api.cluster_video import NO_OWNER, ClusterVideo, NoOwner, Owner
from safewatch.cluster import leases

SECRET = "a-cluster-secret-of-enough-length"


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    """The shared ``pg_engine`` under the name these tests use."""
    return pg_engine


def own(engine: Engine, analyzer: str, camera: str, video_url: str | None) -> int:
    """``analyzer`` heartbeats (advertising ``video_url``) and claims ``camera``."""
    with Session(engine) as session, session.begin():
        leases.heartbeat(session, analyzer, 1, {}, video_url=video_url, instance="t", within=30)
        leases.add_cameras(session, [camera])
        locked = leases.lock_claimable(session, analyzer, camera)
        assert locked is not None
        return leases.claim(session, analyzer, locked, lease_seconds=30)


def test_the_owner_and_its_advertised_url(engine: Engine) -> None:
    relay = ClusterVideo(engine, SECRET, recheck_seconds=0)
    found = relay.owner("cam1")
    assert isinstance(found, NoOwner) and found.code == NO_OWNER
    assert "not been placed" in found.reason
    epoch = own(engine, "a1", "cam1", "http://10.0.0.7:8081")
    assert relay.owner("cam1") == Owner("a1", epoch, "http://10.0.0.7:8081")
    # a re-advertised URL (the analyzer restarted on another port) is read at once
    with Session(engine) as session, session.begin():
        leases.heartbeat(
            session, "a1", 1, {}, video_url="http://10.0.0.7:9000", instance="t", within=30
        )
    assert relay.owner("cam1") == Owner("a1", epoch, "http://10.0.0.7:9000")


def test_each_reason_for_no_owner_is_said(engine: Engine) -> None:
    epoch = own(engine, "a1", "cam1", None)
    found = ClusterVideo(engine, SECRET, recheck_seconds=0).owner("cam1")
    assert isinstance(found, NoOwner) and "a1 serves no video" in found.reason
    found = ClusterVideo(engine, None, recheck_seconds=0).owner("cam1")
    assert isinstance(found, NoOwner) and "cluster.secret is not set" in found.reason
    with Session(engine) as session, session.begin():
        assert leases.release(session, "a1", "cam1", epoch)
    found = ClusterVideo(engine, SECRET, recheck_seconds=0).owner("cam1")
    assert isinstance(found, NoOwner) and found.reason.endswith("now (last owner a1)")
    own(engine, "a2", "cam1", "http://a2:8081")
    with engine.begin() as connection:  # a2 died: its lease ran out (database clock)
        connection.execute(text("UPDATE camera_leases SET expires_at = expires_at - 60"))
    found = ClusterVideo(engine, SECRET, recheck_seconds=0).owner("cam1")
    assert isinstance(found, NoOwner) and "last owner a2" in found.reason


def test_viewers_of_one_camera_share_a_lookup_for_half_a_recheck(engine: Engine) -> None:
    own(engine, "a1", "cam1", "http://a1:8081")
    queries: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    relay = ClusterVideo(engine, SECRET, recheck_seconds=60.0)
    first = relay.owner("cam1")
    assert [relay.owner("cam1") for _ in range(20)] == [first] * 20
    assert len([q for q in queries if "camera_leases" in q]) == 1
    relay.cache_seconds = 0.0  # the answer is now too old
    relay.owner("cam1")
    assert len([q for q in queries if "camera_leases" in q]) == 2
