"""Model catalogue: pull against a real local HTTP server, import/info/resolve with a real model."""

from __future__ import annotations

import hashlib
import http.server
import json
import multiprocessing
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assets import asset
from cli_support import invoke
from safewatch.detect import catalogue as cat
from safewatch.errors import ModelError

PAYLOAD = b"not really onnx, but bytes with a known digest " * 4000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Files(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes); ``/truncated`` promises more than it sends."""

    def do_GET(self) -> None:
        server: FileServer = self.server  # type: ignore[assignment]
        server.hits.append(self.path)
        if self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            self.close_connection = True
            return
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FileServer(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    hits: list[str]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[FileServer]:
    httpd = FileServer(("127.0.0.1", 0), Files)
    httpd.files = {"/models/fake.onnx": PAYLOAD}
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def entry(sha256: str | None, size: int | None = None) -> cat.CatalogueEntry:
    return cat.CatalogueEntry(
        name="fake",
        description="test model",
        url="https://example.invalid/releases/fake.onnx",
        format="yolox",
        input_size=416,
        labels="coco",
        licence="Apache-2.0",
        size=size,
        sha256=sha256,
    )


@pytest.fixture
def fake_catalogue(monkeypatch: pytest.MonkeyPatch) -> dict[str, cat.CatalogueEntry]:
    entries = {"fake": entry(PAYLOAD_SHA, len(PAYLOAD))}
    monkeypatch.setattr(cat, "catalogue", lambda: entries)
    return entries


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cat.CACHE_ENV, str(folder))
    monkeypatch.delenv(cat.MIRROR_ENV, raising=False)
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_builtin_catalogue() -> None:
    entries = cat.catalogue()
    assert set(entries) == {
        "yolox_nano",
        "yolox_tiny",
        "yolox_s",
        "ppe14_yolov8n_int8",
        "head_classifier",
        "yunet",
        "construction_cctv",
    }
    faces = entries["yunet"]
    assert faces.licence == "Apache-2.0" and faces.input_size == 640
    assert faces.mirror[0].path == "models/face_detection_yunet_2023mar.onnx"
    nano = entries["yolox_nano"]
    assert nano.sha256 == "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d"
    assert nano.size == 3_659_407
    assert nano.url.endswith("/0.1.1rc0/yolox_nano.onnx")
    assert [entries[n].input_size for n in ("yolox_nano", "yolox_tiny", "yolox_s")] == [
        416,
        416,
        640,
    ]
    yolox = [entries[n] for n in ("yolox_nano", "yolox_tiny", "yolox_s")]
    assert {e.format for e in yolox} == {"yolox"}
    assert {e.licence for e in yolox} == {"Apache-2.0"}
    ppe = entries["ppe14_yolov8n_int8"]
    assert ppe.url.startswith("https://raw.githubusercontent.com/JeffYeo0406/")
    assert ppe.prepare is not None and ppe.prepare["step"] == "strip_output_qdq"
    clip = entries["construction_cctv"]
    assert clip.kind == "video" and clip.suffix == ".mp4"
    assert clip.url.startswith("https://raw.githubusercontent.com/yihong1120/")
    assert clip.mirror[0].prepared


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cat.CACHE_ENV, str(tmp_path / "m"))
    assert cat.cache_dir() == tmp_path / "m"
    monkeypatch.delenv(cat.CACHE_ENV)
    assert cat.cache_dir() == Path.home() / ".cache" / "safewatch" / "models"


def test_pull_verifies_and_caches(server: FileServer, fake_catalogue: object, cache: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = cat.pull(
        "fake", url=server.url("/models/fake.onnx"), progress=lambda d, t: seen.append((d, t))
    )
    assert result.downloaded and result.checksum == "verified"
    assert result.model.path == cache / "fake.onnx"
    assert result.model.path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert leftovers(cache) == []
    listed = {row.name: row for row in cat.list_models()}
    assert listed["fake"].cached == result.model
    assert listed["fake"].matches_catalogue is True

    again = cat.pull("fake", url=server.url("/models/fake.onnx"))
    assert not again.downloaded and again.checksum == "cached"
    assert server.hits == ["/models/fake.onnx"]


def test_pull_uses_the_mirror(
    server: FileServer, fake_catalogue: object, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cat.MIRROR_ENV, server.url("/models/"))
    assert cat.pull("fake").model.sha256 == PAYLOAD_SHA
    assert server.hits == ["/models/fake.onnx"]


def test_bad_checksum_deletes_the_partial_file(
    server: FileServer, fake_catalogue: dict[str, cat.CatalogueEntry], cache: Path
) -> None:
    fake_catalogue["fake"] = entry("0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch for fake: expected sha256 0000") as err:
        cat.pull("fake", url=server.url("/models/fake.onnx"))
    assert "partial download was deleted" in str(err.value)
    assert leftovers(cache) == []
    assert not (cache / "fake.onnx").exists()


def test_wrong_size_is_refused(
    server: FileServer, fake_catalogue: dict[str, cat.CatalogueEntry], cache: Path
) -> None:
    fake_catalogue["fake"] = entry(PAYLOAD_SHA, size=123)
    with pytest.raises(ModelError, match="size mismatch"):
        cat.pull("fake", url=server.url("/models/fake.onnx"))
    assert list(cache.iterdir()) == []


def test_http_404_is_a_clear_error(server: FileServer, fake_catalogue: object, cache: Path) -> None:
    with pytest.raises(ModelError, match=r"download of fake failed: HTTP 404 .*/missing\.onnx"):
        cat.pull("fake", url=server.url("/missing.onnx"))
    assert list(cache.iterdir()) == []


def test_truncated_download_is_a_clear_error(
    server: FileServer, fake_catalogue: object, cache: Path
) -> None:
    with pytest.raises(ModelError, match=r"interrupted: received 1000 of 188000 bytes"):
        cat.pull("fake", url=server.url("/truncated"), timeout=5)
    assert leftovers(cache) == []


def test_connection_refused_is_a_clear_error(fake_catalogue: object, cache: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ModelError, match=r"cannot reach .* to download fake") as err:
        cat.pull("fake", url=f"http://127.0.0.1:{port}/fake.onnx", timeout=5)
    assert "safewatch models import" in str(err.value)
    assert leftovers(cache) == []


def test_unknown_checksum_is_recorded_then_enforced(
    server: FileServer, fake_catalogue: dict[str, cat.CatalogueEntry], cache: Path
) -> None:
    fake_catalogue["fake"] = entry(None)
    first = cat.pull("fake", url=server.url("/models/fake.onnx"))
    assert first.checksum == "recorded" and first.model.sha256 == PAYLOAD_SHA
    server.files["/models/fake.onnx"] = b"tampered" + PAYLOAD
    with pytest.raises(ModelError, match=f"expected sha256 {PAYLOAD_SHA}"):
        cat.pull("fake", url=server.url("/models/fake.onnx"), force=True)
    assert (cache / "fake.onnx").read_bytes() == PAYLOAD  # the trusted copy is kept


def test_pull_unknown_name(cache: Path) -> None:
    with pytest.raises(ModelError, match="no model 'nope' in the catalogue"):
        cat.pull("nope")


def test_resolve_an_existing_path(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert cat.resolve("m.onnx", tmp_path) == tmp_path / "m.onnx"
    assert cat.resolve(str(tmp_path / "m.onnx"), Path("/")) == tmp_path / "m.onnx"


def test_resolve_a_cached_name(
    server: FileServer, fake_catalogue: object, cache: Path, tmp_path: Path
) -> None:
    cat.pull("fake", url=server.url("/models/fake.onnx"))
    assert cat.resolve("fake", tmp_path) == cache / "fake.onnx"


def test_resolve_a_catalogue_name_not_yet_pulled(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        cat.resolve("yolox_nano", tmp_path)
    message = str(err.value)
    assert "`safewatch models pull yolox_nano` (downloads https://github.com/" in message
    assert "or from $SAFEWATCH_MIRROR" in message
    assert "`safewatch models import /path/to/file.onnx" in message


def test_resolve_unknown(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found: no file at .*missing\.onnx") as err:
        cat.resolve("missing.onnx", tmp_path)
    assert "safewatch models pull yolox_nano" in str(err.value)


def test_info_of_the_real_yolox_nano() -> None:
    path = asset("models/yolox_nano_coco.onnx")
    details = cat.info(path)
    assert details.size == path.stat().st_size
    assert details.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [i.name for i in details.inputs] == ["images"]
    assert details.inputs[0].shape[1:] == (3, 416, 416)
    assert details.outputs[0].shape[1:] == (3549, 85)
    assert details.inputs[0].type == "tensor(float)"


def test_info_of_a_model_with_names_metadata() -> None:
    details = cat.info(asset("models/ppe14_yolov8n.onnx"))
    assert "NO-Hardhat" in details.metadata.get("names", "")


def test_info_rejects_non_models(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        cat.info(tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="no model file"):
        cat.info(tmp_path / "absent.onnx")


def test_import_then_resolve_offline(cache: Path, tmp_path: Path) -> None:
    source = asset("models/yolox_nano_coco.onnx")
    model = cat.import_model(source, name="yolox_nano")
    assert model.path == cache / "yolox_nano.onnx"
    assert model.source == "import" and model.origin == str(source.resolve())
    assert model.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert cat.resolve("yolox_nano", tmp_path) == model.path
    assert leftovers(cache) == []
    row = {r.name: r for r in cat.list_models()}["yolox_nano"]
    assert row.matches_catalogue is True  # a file the entry pins (its mirror re-export)
    assert cat.import_model(source, name="yolox_nano") == model  # same bytes: no-op
    # serve/audit/check-config pull every catalogue name they use: the import counts, offline.
    pulled = cat.pull("yolox_nano", mirror=str(tmp_path / "no-mirror"))
    assert (pulled.checksum, pulled.model) == ("cached", model)


def test_a_catalogue_name_takes_only_its_pinned_file(cache: Path, tmp_path: Path) -> None:
    """yolov8n imported as yolox_nano used to be cached, then ignored: the next pull
    re-downloaded over it (offline: failed, telling the user to run the import they had run)."""
    other = asset("models/yolov8n_coco.onnx")
    with pytest.raises(ModelError) as err:
        cat.import_model(other, name="yolox_nano")
    message = str(err.value)
    assert "'yolox_nano' is a catalogue name" in message
    assert "39935008ddbffd2e" in message  # the pinned mirror file's sha256 is listed
    assert "import it under another name (`--name my_yolox_nano`)" in message
    assert not cache.exists() or list(cache.iterdir()) == []
    with pytest.raises(ModelError, match="ships with safewatch"):
        cat.import_model(other, name="head_classifier")
    assert cat.import_model(other, name="my_yolox_nano").source == "import"


def test_models_import_force_replaces(cache: Path, tmp_path: Path) -> None:
    """The refusal says "replace it with --force"; the command had no such option."""
    code, output = invoke(
        "models", "import", str(asset("models/yolox_nano_coco.onnx")), "--name", "people"
    )
    assert code == 0, output
    other = asset("models/yolov8n_coco.onnx")
    with pytest.raises(ModelError, match="replace it with --force"):
        invoke("models", "import", str(other), "--name", "people")
    code, output = invoke("models", "import", str(other), "--name", "people", "--force")
    assert code == 0, output
    assert cat.info("people").sha256 == hashlib.sha256(other.read_bytes()).hexdigest()


def test_import_refuses_to_replace_a_different_model(cache: Path, tmp_path: Path) -> None:
    cat.import_model(asset("models/yolox_nano_coco.onnx"), name="people")
    other = asset("models/yolov8n_coco.onnx")
    with pytest.raises(ModelError, match="already cached as 'people'"):
        cat.import_model(other, name="people")
    replaced = cat.import_model(other, name="people", force=True)
    assert replaced.sha256 == hashlib.sha256(other.read_bytes()).hexdigest()


def test_import_defaults_to_the_file_stem_and_checks_names(cache: Path, tmp_path: Path) -> None:
    source = tmp_path / "site model.onnx"
    shutil.copyfile(asset("models/yolox_nano_coco.onnx"), source)
    with pytest.raises(ModelError, match="invalid model name"):
        cat.import_model(source)
    assert cat.import_model(source, name="site_model").name == "site_model"
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        cat.import_model(tmp_path / "junk.onnx")


def test_listing_rows_expose_catalogue_fields(cache: Path) -> None:
    rows = {r.name: r for r in cat.list_models()}
    nano = rows["yolox_nano"]
    assert (nano.format, nano.input_size, nano.licence, nano.cached) == (
        "yolox",
        416,
        "Apache-2.0",
        None,
    )
    assert nano.url is not None and nano.url.startswith("https://github.com/Megvii")


def test_info_by_cached_name_is_json_ready(cache: Path) -> None:
    cat.import_model(asset("models/yolox_nano_coco.onnx"), name="people")
    details = cat.info("people")
    assert details.path == cache / "people.onnx"
    data = json.loads(json.dumps(details.to_dict()))
    assert data["inputs"][0]["name"] == "images"
    with pytest.raises(ModelError, match="no model file"):
        cat.import_model(Path("people"))


def test_a_packaged_model_resolves_and_pulls_without_a_download(tmp_path: Path) -> None:
    from safewatch.detect.catalogue import catalogue, packaged_file, pull, resolve

    entry = catalogue()["head_classifier"]
    shipped = packaged_file("head_classifier", entry)
    assert resolve("head_classifier", tmp_path, cache=tmp_path / "cache") == shipped
    result = pull("head_classifier", cache=tmp_path / "cache", mirror=str(tmp_path / "none"))
    assert (result.checksum, result.downloaded, result.model.path) == ("packaged", False, shipped)
    assert not (tmp_path / "cache").exists()  # nothing was downloaded or cached


def test_listing_and_info_know_the_packaged_model(cache: Path) -> None:
    """head_classifier ships inside the package: it was listed as ``cached no``."""
    row = {r.name: r for r in cat.list_models()}["head_classifier"]
    assert row.state == "packaged" and row.cached is not None
    code, listing = invoke("models", "list")
    assert code == 0 and re.search(
        r"^head_classifier +head_classifier +48 .* packaged ", listing, re.M
    ), listing
    assert cat.info("head_classifier").sha256 == row.cached.sha256
    assert not cache.exists()  # listing it cached nothing


def test_a_piped_listing_shows_every_name_and_source_whole(cache: Path) -> None:
    """Piped (`models list | cat`, grep, a script) the Rich table was laid out 80 wide and cut
    names to "ppe14_yolov8…" and URLs to "https://g…", which no other command takes."""
    code, listing = invoke("models", "list")  # the test runner's output is not a terminal
    assert code == 0
    lines = listing.splitlines()
    assert lines[0].split() == ["name", "format", "input", "licence", "cached", "source"]
    for entry in cat.list_models():
        (line,) = (line for line in lines if line.split()[0] == entry.name)
        assert line.rstrip().endswith(entry.url or "imported"), line
    assert "…" not in listing


def test_info_of_a_catalogue_model_not_pulled_says_how_to_pull_it(cache: Path) -> None:
    with pytest.raises(ModelError) as err:
        cat.info("yolox_nano")
    assert "run `safewatch models pull yolox_nano`" in str(err.value)
    assert {r.name: r for r in cat.list_models()}["yolox_nano"].state == "no"


@pytest.mark.parametrize(
    ("name", "remedy"),
    [
        ("yolox_nano", "run `safewatch models pull yolox_nano`"),
        ("people", "import it again: `safewatch models import {origin} --name people`"),
    ],
)
def test_a_truncated_cache_file_is_reported_with_the_way_to_get_it_again(
    cache: Path, name: str, remedy: str
) -> None:
    """The index alone said ``cached yes`` and info failed with "not a valid ONNX model"."""
    source = asset("models/yolox_nano_coco.onnx")
    model = cat.import_model(source, name=name)
    model.path.write_bytes(model.path.read_bytes()[:100_000])
    assert {r.name: r for r in cat.list_models()}[name].state == "damaged"
    code, listing = invoke("models", "list")
    assert code == 0 and f"{name}: the cached file is missing or truncated" in listing
    with pytest.raises(ModelError) as err:
        cat.info(name)
    message = str(err.value)
    assert f"has 100000 bytes, the index recorded {model.size}" in message
    assert remedy.format(origin=source.resolve()) in message
    if name == "people":  # following the advice repairs it (it used to be a no-op)
        assert cat.import_model(source, name=name).path.stat().st_size == model.size
        assert cat.info(name).sha256 == model.sha256
    model.path.unlink()
    assert {r.name: r for r in cat.list_models()}[name].state == "missing"


def test_a_cache_file_changed_in_place_is_reported(cache: Path) -> None:
    model = cat.import_model(asset("models/yolox_nano_coco.onnx"), name="people")
    data = bytearray(model.path.read_bytes())
    data[-1] ^= 0xFF
    model.path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="the index recorded " + model.sha256):
        cat.info("people")


def record_names(cache: Path, worker: int, count: int, start: Any) -> None:
    """Child process: record ``count`` names of its own in the shared cache index."""
    start.wait()
    for i in range(count):
        name = f"w{worker}_{i}"
        cat._record(
            cache,
            cat.CachedModel(name, cache / f"{name}.onnx", "0" * 64, 1, "import", "test", 0.0),
        )


def test_concurrent_writers_keep_every_index_entry(tmp_path: Path) -> None:
    """Scaled analyzers share the models volume: an unlocked read-modify-write of index.json by
    4 processes recording 40 names each kept 50-59 of the 160 entries (5 runs)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    context = multiprocessing.get_context("fork")
    workers, count = 4, 40
    start = context.Barrier(workers)
    children = [
        context.Process(target=record_names, args=(cache, w, count, start)) for w in range(workers)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    names = set(json.loads((cache / cat.INDEX_FILE).read_text())["models"])
    assert names == {f"w{w}_{i}" for w in range(workers) for i in range(count)}


def test_a_cache_that_cannot_be_locked_still_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """NFSv3 without lockd refuses flock (ENOLCK): the index lock made every pull there fail
    with a traceback, where the atomic index write had worked; it is updated unlocked, said."""
    import errno

    def refuse(_fd: int, _op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(cat.fcntl, "flock", refuse)
    cache = tmp_path / "cache"
    cache.mkdir()
    with caplog.at_level("WARNING", logger=cat.__name__):
        cat._record(
            cache, cat.CachedModel("people", cache / "people.onnx", "0" * 64, 1, "import", "t", 0)
        )
    assert set(json.loads((cache / cat.INDEX_FILE).read_text())["models"]) == {"people"}
    assert "cannot be locked (No locks available)" in caplog.text
