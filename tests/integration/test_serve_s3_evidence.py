"""``safewatch serve`` with evidence in S3 (moto): clips are written frame by frame into the
local spool under ``evidence_dir`` and stored in the bucket when they end.

Before the spool had its own folder the server could not start at all with ``evidence_s3`` (the
clip spool was taken from the evidence store's folder, which an S3 store has not): the compose
and Helm deployments, both on MinIO, hit that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_support import wait_for, write_site

from assets import asset
from db_servers import MotoS3
from safewatch.config.loader import load_site
from safewatch.runtime.service import RuntimeService, ServeOptions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CLIP = "video/construction_cctv_640x352_24s.mp4"


def test_serve_stores_clips_in_s3_through_a_local_spool(
    s3_server: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    s3 = {
        "bucket": s3_bucket,
        "endpoint_url": s3_server.endpoint_url,
        "region": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "addressing_style": "path",
    }
    storage = {"database": "sqlite:///data/safewatch.db", "evidence_s3": s3}
    path = write_site(tmp_path, {"yard": str(asset(CLIP))}, extra={"storage": storage})
    service = RuntimeService(
        load_site(path), ServeOptions(rules=tmp_path / "rules", http=False, watch_site=False)
    )
    service.start()
    try:
        repository = service.storage.repository
        clipped = wait_for(
            lambda: [i for i in repository.list() if i.clip is not None],
            150,
            "an incident's clip stored",
        )
    finally:
        service.stop()
    key = clipped[0].clip
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] > 1000
    spool = tmp_path / "safewatch-data" / "evidence" / ".clips-in-progress"
    assert spool.is_dir() and not list(spool.glob("*.part")), "the spool is local and emptied"
