"""A started server has frozen its start-up objects (``freeze_start_up_objects``).

The unit tests (tests/unit/runtime/test_runtime_gc_freeze.py) cover what the freeze does; this
checks the real server does it once everything is loaded, so that the detector sessions, the
rules and the storage objects are out of the collector's full passes while frames flow.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from serve_support import write_site

from assets import asset
from safewatch.config.loader import load_site
from safewatch.runtime.service import RuntimeService, ServeOptions

pytestmark = [pytest.mark.timeout(120)]


def test_the_started_server_is_out_of_the_collectors_generations(tmp_path: Path) -> None:
    video = str(asset("video/construction_cctv_640x352_24s.mp4"))
    path = write_site(tmp_path, {"yard": video})
    gc.unfreeze()
    service = RuntimeService(
        load_site(path), ServeOptions(rules=tmp_path / "rules", http=False, watch_site=False)
    )
    assert any(o is service for o in gc.get_objects())
    service.start()
    try:
        assert gc.get_freeze_count() > 0
        assert not any(o is service for o in gc.get_objects())
    finally:
        service.stop()
        gc.unfreeze()
