"""Blob store in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...).

S3 already gives the atomicity the evidence store needs: a PUT (or a completed multipart upload)
makes the whole object visible at once, and a failed or aborted upload leaves the previous object
untouched. So a put is one request, with the content's SHA-256 sent along: the server checks the
bytes it received against it (``ChecksumSHA256``, small objects) and it is kept as object metadata
(``x-amz-meta-sha256``) so a listing can tell what was stored without downloading. Keys are the
evidence keys under an optional prefix, so one bucket can serve several sites.

boto3 is an optional dependency (``pip install 'safewatch[s3]'``); it is imported when a store is
built, never at module import. Credentials come from the site file (``${ENV}`` interpolated) or,
when left out there, from boto3's usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
shared config files, instance roles).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from safewatch.errors import NotFound, StorageError
from safewatch.storage.blobs import BlobInfo, check_key, sha256_of_stream

__all__ = ["S3BlobStore"]

_MISSING = {"404", "NoSuchKey", "NotFound"}
_DEFAULT_TYPE = "application/octet-stream"

AddressingStyle = Literal["auto", "path", "virtual"]


def _client_error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Blobs as objects in one bucket, under an optional key prefix.

    Args:
        bucket: Bucket name (it must exist: safewatch never creates buckets, which is an
            administrator's decision about region, versioning and object lock).
        prefix: Key prefix, e.g. ``north-yard/``; a trailing ``/`` is added when missing.
        client: A ready boto3 S3 client (tests, custom sessions); built from the other
            arguments when ``None``.
        endpoint_url: For S3-compatible servers, e.g. ``http://minio:9000``; ``None`` for AWS.
        region: Region name; MinIO accepts any (``us-east-1`` is conventional).
        access_key_id: Access key; ``None`` uses boto3's credential chain.
        secret_access_key: Secret key; ``None`` uses boto3's credential chain.
        addressing_style: ``path`` (``host/bucket/key``; what MinIO and most self-hosted servers
            want), ``virtual`` (``bucket.host/key``) or ``auto`` (boto3 decides).

    Raises:
        StorageError: boto3 is not installed.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        client: Any | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: AddressingStyle = "auto",
    ) -> None:
        self.bucket = bucket
        cleaned = prefix.strip("/")
        self.prefix = f"{check_key(cleaned)}/" if cleaned else ""
        self.endpoint_url = endpoint_url
        if client is None:
            client = self._build_client(
                endpoint_url, region, access_key_id, secret_access_key, addressing_style
            )
        self._client = client
        if self.endpoint_url is None:
            meta = getattr(client, "meta", None)
            self.endpoint_url = getattr(meta, "endpoint_url", None)
        try:
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as exc:  # pragma: no cover - client given without botocore
            raise StorageError("S3 evidence needs boto3: pip install 'safewatch[s3]'") from exc
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        # boto3's managed transfer (``upload_file``) does not let botocore's errors through: it
        # wraps every refusal (no bucket, access denied, a failed part) in its own
        # ``S3UploadFailedError``, a ``Boto3Error``, so uploads must catch that family too.
        try:
            from boto3.exceptions import Boto3Error
        except ImportError:  # pragma: no cover - a bare botocore client: no managed transfers
            self._upload_errors: tuple[type[Exception], ...] = self._errors
        else:
            self._upload_errors = (*self._errors, Boto3Error)

    @staticmethod
    def _build_client(
        endpoint_url: str | None,
        region: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        addressing_style: AddressingStyle,
    ) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise StorageError("S3 evidence needs boto3: pip install 'safewatch[s3]'") from exc
        config = Config(
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        return session.client("s3", endpoint_url=endpoint_url, config=config)

    @property
    def location(self) -> str:
        """``s3://bucket/prefix/``, for messages."""
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        code = _client_error_code(exc)
        detail = f"{code}: {exc}" if code else str(exc)
        return StorageError(f"cannot {action} evidence {self.location}{key}: {detail}")

    def check(self) -> None:
        """Fail early, with a clear message, when the bucket is missing or unreachable.

        Raises:
            StorageError: No such bucket, no permission, or no connection.
        """
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            code = _client_error_code(exc)
            where = self.endpoint_url or "the default AWS endpoint"
            if code in _MISSING:
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist at {where}") from exc
            raise StorageError(f"cannot use S3 bucket {self.bucket!r} at {where}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> BlobInfo:
        """Upload ``data`` in one PUT; the server checks it against its SHA-256."""
        raw = hashlib.sha256(data).digest()
        digest = raw.hex()
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type or _DEFAULT_TYPE,
                Metadata={"sha256": digest},
                ChecksumSHA256=base64.b64encode(raw).decode(),
            )
        except self._errors as exc:
            raise self._fail("write", key, exc) from exc
        return BlobInfo(key, len(data), digest)

    def put_file(
        self, key: str, source: Path, *, content_type: str | None = None, move: bool = False
    ) -> BlobInfo:
        """Upload a file (multipart when large: still all-or-nothing); ``move`` deletes it after.

        Raises:
            StorageError: ``source`` cannot be read, or the upload failed (nothing is stored).
        """
        try:
            with Path(source).open("rb") as handle:
                digest, size = sha256_of_stream(handle)
        except OSError as exc:
            raise StorageError(
                f"cannot read evidence source {source}: {exc.strerror or exc}"
            ) from exc
        failures: tuple[type[Exception], ...] = (*self._upload_errors, OSError)
        try:
            self._client.upload_file(
                str(source),
                self.bucket,
                self._key(key),
                ExtraArgs={
                    "ContentType": content_type or _DEFAULT_TYPE,
                    "Metadata": {"sha256": digest},
                },
            )
        except failures as exc:
            raise self._fail("write", key, exc) from exc
        if move:
            Path(source).unlink(missing_ok=True)
        return BlobInfo(key, size, digest)

    def open(self, key: str) -> BinaryIO:
        """A streaming body of the object (close it, or use it in a ``with`` block).

        Raises:
            NotFound: No such object.
            StorageError: Any other S3 failure.
        """
        return self.open_sized(key)[0]

    def open_sized(self, key: str) -> tuple[BinaryIO, int]:
        """A streaming body of the object and its size, both from the one GET (a HEAD before
        it could describe an earlier object under the key).

        Raises:
            NotFound: No such object.
            StorageError: Any other S3 failure.
        """
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            if _client_error_code(exc) in _MISSING:
                raise NotFound("evidence", key) from exc
            raise self._fail("read", key, exc) from exc
        return cast(BinaryIO, response["Body"]), int(response["ContentLength"])

    def read_bytes(self, key: str) -> bytes:
        """The whole object."""
        with self.open(key) as body:
            try:
                return body.read()
            except self._errors as exc:
                raise self._fail("read", key, exc) from exc

    def stat(self, key: str) -> BlobInfo | None:
        """Size and stored SHA-256 (object metadata) of the object, or ``None``."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            if _client_error_code(exc) in _MISSING:
                return None
            raise self._fail("read", key, exc) from exc
        metadata = head.get("Metadata") or {}
        return BlobInfo(key, int(head["ContentLength"]), metadata.get("sha256"))

    def sha256(self, key: str) -> str:
        """SHA-256 of the object's bytes, downloaded and hashed as a stream."""
        with self.open(key) as body:
            try:
                return sha256_of_stream(body)[0]
            except self._errors as exc:
                raise self._fail("read", key, exc) from exc

    def delete(self, key: str) -> None:
        """Delete the object (S3 deletes of missing keys succeed, so this is idempotent)."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            raise self._fail("delete", key, exc) from exc

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Objects under the store's prefix whose key starts with ``prefix``, in key order."""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", ()):
                    yield BlobInfo(item["Key"][len(self.prefix) :], int(item["Size"]))
        except self._errors as exc:
            raise self._fail("list", prefix or "*", exc) from exc

    def local_path(self, key: str) -> Path | None:
        """Always ``None``: objects are not files on this machine."""
        return None

    def __repr__(self) -> str:
        return f"S3BlobStore({self.location!r}, endpoint_url={self.endpoint_url!r})"
