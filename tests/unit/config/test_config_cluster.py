"""The site file's ``cluster:`` block and what ``serve --cluster`` refuses, with file:line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from safewatch.config.cluster import cluster_refusal
from safewatch.config.loader import load_site
from safewatch.errors import ConfigError

PG = "postgresql+psycopg://safewatch@db.plant/safewatch"

SITE = """\
version: 1
models:
  coco: {{path: model.onnx}}
cameras:
  yard: {{source: clip.mp4, models: [coco]{camera}}}
storage:
  database: {database}
  evidence_dir: /mnt/evidence
{storage}{cluster}"""


def site_file(
    folder: Path,
    *,
    database: str = PG,
    storage: str = "",
    cluster: str = "",
    camera: str = "",
) -> Path:
    path = folder / "site.yaml"
    path.write_text(SITE.format(database=database, storage=storage, cluster=cluster, camera=camera))
    return path


def test_defaults_and_per_camera_labels(tmp_path: Path) -> None:
    site = load_site(
        site_file(
            tmp_path,
            storage="  evidence_shared: true\n",
            cluster="cluster:\n  capacity: 2\n  labels: {gpu: 'true'}\n",
            camera=", labels: {gpu: 'true'}",
        )
    )
    cluster = site.config.cluster
    assert (cluster.lease_seconds, cluster.capacity, cluster.labels) == (10.0, 2, {"gpu": "true"})
    assert site.config.cameras["yard"].labels == {"gpu": "true"}
    assert cluster_refusal(site) is None


@pytest.mark.parametrize(
    ("cluster", "line", "words"),
    [
        ("cluster:\n  lease_seconds: 0.2\n", 11, "greater than or equal to 1"),
        ("cluster:\n  capacity: 0\n", 11, "greater than or equal to 1"),
        ("cluster:\n  labels: {'bad label': x}\n", 11, "letters, digits"),
        ("cluster:\n  leases: 3\n", 11, "leases"),
        ("cluster:\n  secret: short\n", 11, "16 characters or more"),
        ("cluster:\n  secret: change-this-cluster-secret\n", 11, "placeholder"),
        ("cluster:\n  secret: CHANGEME-before-production\n", 11, "placeholder"),
        ("cluster:\n  secret: safewatch-secret\n", 11, "placeholder"),
        ("cluster:\n  video_port: 70000\n", 11, "less than or equal to 65535"),
        ("cluster:\n  advertise_host: 'a b'\n", 11, "should match pattern"),
    ],
)
def test_bad_cluster_block_names_the_file_and_line(
    tmp_path: Path, cluster: str, line: int, words: str
) -> None:
    path = site_file(tmp_path, storage="  evidence_shared: true\n", cluster=cluster)
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    message = str(caught.value)
    assert f"{path}:{line}" in message and words in message, message


def test_the_cluster_secret_is_kept_out_of_reprs(tmp_path: Path) -> None:
    site = load_site(
        site_file(
            tmp_path,
            storage="  evidence_shared: true\n",
            cluster="cluster:\n  secret: sixteen-chars-and-more\n  video_port: 8081\n",
        )
    )
    cluster = site.config.cluster
    assert cluster.secret is not None
    assert cluster.secret.get_secret_value() == "sixteen-chars-and-more"
    assert "sixteen" not in repr(cluster) and cluster.video_port == 8081


def test_sqlite_is_refused_at_its_line(tmp_path: Path) -> None:
    site = load_site(site_file(tmp_path, database="sqlite:///data/safewatch.db"))
    refusal = cluster_refusal(site)
    assert refusal is not None
    assert refusal.format().startswith(f"{site.path}:7: storage.database: cluster mode needs")
    assert "not sqlite" in refusal.format()


def test_a_local_evidence_folder_must_be_declared_shared(tmp_path: Path) -> None:
    site = load_site(site_file(tmp_path))
    refusal = cluster_refusal(site)
    assert refusal is not None
    assert refusal.format().startswith(f"{site.path}:8: storage.evidence_dir:")
    assert "evidence_shared: true" in refusal.format()
    bucket = "  evidence_s3: {bucket: plant-evidence}\n"
    assert cluster_refusal(load_site(site_file(tmp_path, storage=bucket))) is None


def test_recording_cameras_need_a_recordings_folder_declared_shared(tmp_path: Path) -> None:
    """A camera's next owner continues its recording, and any API node serves it: the
    recordings folder must be one every node reaches, as the evidence folder."""
    recording = ", recording: {max_hours: 24}"
    shared = "  evidence_shared: true\n"
    site = load_site(site_file(tmp_path, storage=shared, camera=recording))
    refusal = cluster_refusal(site)
    assert refusal is not None
    assert "storage.recordings_dir" in refusal.format()
    assert "['yard']" in refusal.format() and "recordings_shared: true" in refusal.format()
    both = shared + "  recordings_shared: true\n"
    assert cluster_refusal(load_site(site_file(tmp_path, storage=both, camera=recording))) is None
    off = ", recording: {enabled: false}"
    assert cluster_refusal(load_site(site_file(tmp_path, storage=shared, camera=off))) is None


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safewatch", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )


def test_serve_cluster_refuses_sqlite_with_one_line_and_status_2(tmp_path: Path) -> None:
    path = site_file(tmp_path, database="sqlite:///data/safewatch.db")
    (tmp_path / "rules").mkdir()
    done = serve("--config", str(path), "--cluster")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{path}:7: storage.database" in lines[0], done.stderr
    assert not (tmp_path / "data").exists(), "nothing is created before the refusal"


def test_role_without_cluster_is_refused(tmp_path: Path) -> None:
    path = site_file(tmp_path)
    done = serve("--config", str(path), "--role", "analyzer")
    assert done.returncode == 2
    assert "--role and --analyzer-id need --cluster" in done.stderr
