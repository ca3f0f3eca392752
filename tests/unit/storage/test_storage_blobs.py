"""Blob stores: the local folder and S3 (against a real S3-compatible server, moto) keep one
contract: atomic puts that return the content's SHA-256, reads, idempotent deletes, listings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from db_servers import MotoS3
from safewatch.errors import NotFound, StorageError
from safewatch.storage import BlobStore, LocalBlobStore
from safewatch.storage.blobs import check_key
from safewatch.storage.s3_blobs import S3BlobStore


def s3_store(server: MotoS3, bucket: str, prefix: str = "site-a/") -> S3BlobStore:
    """A store on the test server, sharing the server's client (building one is slow)."""
    return S3BlobStore(bucket, prefix=prefix, client=server.client())


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "evidence")
    else:
        server: MotoS3 = request.getfixturevalue("s3_server")
        yield s3_store(server, request.getfixturevalue("s3_bucket"))


def test_put_read_stat_and_hash(store: BlobStore) -> None:
    data = b"\xff\xd8 a still \xff\xd9"
    info = store.put_bytes("cam/2026-11-20/abc.jpg", data, content_type="image/jpeg")
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    assert store.read_bytes("cam/2026-11-20/abc.jpg") == data
    assert store.sha256("cam/2026-11-20/abc.jpg") == info.sha256
    stat = store.stat("cam/2026-11-20/abc.jpg")
    assert stat is not None and stat.size == len(data)
    with store.open("cam/2026-11-20/abc.jpg") as stream:
        assert stream.read() == data


def test_put_replaces_the_previous_object(store: BlobStore) -> None:
    store.put_bytes("a/b.jpg", b"first")
    store.put_bytes("a/b.jpg", b"second version")
    assert store.read_bytes("a/b.jpg") == b"second version"
    assert [info.key for info in store.list()] == ["a/b.jpg"]


def test_an_opened_object_keeps_its_own_size_when_the_key_is_replaced(store: BlobStore) -> None:
    store.put_bytes("cam/2025-01-01/a.jpg", b"first")
    stream, size = store.open_sized("cam/2025-01-01/a.jpg")
    with stream:
        store.put_bytes("cam/2025-01-01/a.jpg", b"replaced, and longer")
        assert (size, stream.read()) == (5, b"first")
    stream, size = store.open_sized("cam/2025-01-01/a.jpg")
    with stream:
        assert (size, stream.read()) == (20, b"replaced, and longer")


def test_put_file_hashes_and_moves(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "clip.mp4.part"
    payload = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk
    source.write_bytes(payload)
    info = store.put_file("cam/d/clip.mp4", source, content_type="video/mp4", move=True)
    assert info.sha256 == hashlib.sha256(payload).hexdigest()
    assert info.size == len(payload)
    assert not source.exists()
    assert store.sha256("cam/d/clip.mp4") == info.sha256


def test_put_file_keeps_source_without_move(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "x.bin"
    source.write_bytes(b"abc")
    store.put_file("k/x.bin", source)
    assert source.read_bytes() == b"abc"


def test_missing_source_is_a_storage_error(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read evidence source"):
        store.put_file("k/x.bin", tmp_path / "nope.bin")
    assert store.stat("k/x.bin") is None


def test_missing_objects(store: BlobStore) -> None:
    assert store.stat("no/such.jpg") is None
    with pytest.raises(NotFound, match=r"evidence 'no/such\.jpg' not found"):
        store.read_bytes("no/such.jpg")
    with pytest.raises(NotFound):
        store.sha256("no/such.jpg")


def test_delete_is_idempotent(store: BlobStore) -> None:
    store.put_bytes("a/1.jpg", b"1")
    store.delete("a/1.jpg")
    store.delete("a/1.jpg")
    assert store.stat("a/1.jpg") is None
    assert list(store.list()) == []


def test_list_in_key_order_with_prefix(store: BlobStore) -> None:
    for key in ["cam-b/d1/3.jpg", "cam-a/d2/2.jpg", "cam-a/d1/1.jpg"]:
        store.put_bytes(key, key.encode())
    assert [i.key for i in store.list()] == ["cam-a/d1/1.jpg", "cam-a/d2/2.jpg", "cam-b/d1/3.jpg"]
    listed = list(store.list("cam-a/"))
    assert [i.key for i in listed] == ["cam-a/d1/1.jpg", "cam-a/d2/2.jpg"]
    assert [i.size for i in listed] == [len("cam-a/d1/1.jpg"), len("cam-a/d2/2.jpg")]


@pytest.mark.parametrize(
    "key", ["", "/abs.jpg", "../up.jpg", "a/../../b.jpg", "a//b.jpg", ".hidden", "a\\b.jpg"]
)
def test_unsafe_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(StorageError, match="invalid evidence key"):
        store.put_bytes(key, b"x")
    with pytest.raises(StorageError):
        check_key(key)


# -- local folder specifics ---------------------------------------------------------------------


def test_local_failed_put_keeps_previous_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes("c/d/x.jpg", b"old")

    def crash(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safewatch.storage.local_blobs.os.replace", crash)
    with pytest.raises(StorageError, match="No space left"):
        store.put_bytes("c/d/x.jpg", b"new")
    assert (tmp_path / "c/d/x.jpg").read_bytes() == b"old"
    assert sorted(p.name for p in (tmp_path / "c/d").iterdir()) == ["x.jpg"]


def test_local_delete_prunes_empty_day_folders(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "ev")
    store.put_bytes("cam/2026-11-01/a.jpg", b"a")
    store.put_bytes("cam/2026-11-02/b.jpg", b"b")
    store.delete("cam/2026-11-01/a.jpg")
    assert not (tmp_path / "ev/cam/2026-11-01").exists()
    assert (tmp_path / "ev/cam/2026-11-02/b.jpg").exists()
    assert (tmp_path / "ev").is_dir()


def test_local_list_skips_temporary_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes("c/a.jpg", b"a")
    (tmp_path / "c" / ".a.jpg.123.part").write_bytes(b"partial")
    assert [i.key for i in store.list()] == ["c/a.jpg"]


# -- S3 specifics -------------------------------------------------------------------------------


def test_s3_store_built_from_settings(s3_server: MotoS3, s3_bucket: str) -> None:
    """The way a site file configures it: endpoint, region, keys, path-style addressing."""
    store = S3BlobStore(
        s3_bucket,
        prefix="/north-yard",
        endpoint_url=s3_server.endpoint_url,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        addressing_style="path",
    )
    store.check()
    info = store.put_bytes("yard/2026-11-20/abc.jpg", b"jpeg", content_type="image/jpeg")
    head = s3_server.client().head_object(
        Bucket=s3_bucket, Key="north-yard/yard/2026-11-20/abc.jpg"
    )
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"]["sha256"] == info.sha256
    stat = store.stat("yard/2026-11-20/abc.jpg")
    assert stat is not None and stat.sha256 == info.sha256
    assert store.location == f"s3://{s3_bucket}/north-yard/"


def test_s3_prefixes_keep_sites_apart(s3_server: MotoS3, s3_bucket: str) -> None:
    a = s3_store(s3_server, s3_bucket, prefix="site-a")
    b = s3_store(s3_server, s3_bucket, prefix="site-b")
    a.put_bytes("c/1.jpg", b"a")
    b.put_bytes("c/1.jpg", b"b")
    assert a.read_bytes("c/1.jpg") == b"a"
    assert [i.key for i in b.list()] == ["c/1.jpg"]


def test_s3_unfinished_multipart_upload_is_invisible(s3_server: MotoS3, s3_bucket: str) -> None:
    """What makes a large clip upload all-or-nothing: until the multipart upload completes,
    readers see the previous object; an aborted one leaves it untouched."""
    store = s3_store(s3_server, s3_bucket)
    store.put_bytes("c/clip.mp4", b"complete old clip")
    client = s3_server.client()
    key = f"{store.prefix}c/clip.mp4"
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    client.upload_part(
        Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 6_000_000
    )
    assert store.read_bytes("c/clip.mp4") == b"complete old clip"
    client.abort_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"])
    assert store.read_bytes("c/clip.mp4") == b"complete old clip"
    assert [i.key for i in store.list()] == ["c/clip.mp4"]


def test_s3_large_file_goes_up_whole(s3_server: MotoS3, s3_bucket: str, tmp_path: Path) -> None:
    """Above boto3's 8 MiB threshold put_file uses a multipart upload; the result is one object
    with the whole content."""
    source = tmp_path / "long.mp4"
    payload = hashlib.sha256(b"seed").digest() * (9 * 1024 * 1024 // 32)
    source.write_bytes(payload)
    store = s3_store(s3_server, s3_bucket)
    info = store.put_file("c/long.mp4", source)
    assert info.size == len(payload)
    assert store.sha256("c/long.mp4") == hashlib.sha256(payload).hexdigest()


def test_s3_missing_bucket_is_named(s3_server: MotoS3) -> None:
    store = s3_store(s3_server, "no-such-bucket-here")
    with pytest.raises(StorageError, match="S3 bucket 'no-such-bucket-here' does not exist"):
        store.check()
    with pytest.raises(StorageError, match="cannot write evidence s3://no-such-bucket-here/"):
        store.put_bytes("a/b.jpg", b"x")


def test_s3_upload_refused_by_the_server_is_a_storage_error(
    s3_server: MotoS3, tmp_path: Path
) -> None:
    """boto3's upload_file wraps every S3 refusal in its own S3UploadFailedError (not a botocore
    error); put_file must still raise StorageError, which the recorder handles, and keep the
    source."""
    store = s3_store(s3_server, "no-such-bucket-here")
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip")
    with pytest.raises(
        StorageError, match=r"cannot write evidence s3://no-such-bucket-here/site-a/c/clip\.mp4"
    ):
        store.put_file("c/clip.mp4", source, move=True)
    assert source.exists(), "a refused upload must not delete the source"


def test_s3_unreachable_endpoint_is_a_storage_error(tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3BlobStore("bucket", client=client)
    with pytest.raises(
        StorageError, match=r"cannot use S3 bucket 'bucket' at http://127\.0\.0\.1:9"
    ):
        store.check()
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip")
    with pytest.raises(StorageError, match=r"cannot write evidence s3://bucket/c/clip\.mp4"):
        store.put_file("c/clip.mp4", source, move=True)
    assert source.exists(), "a failed upload must not delete the source"
