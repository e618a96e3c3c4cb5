"""The blob store on the S3 API (AWS S3, SeaweedFS, MinIO, Ceph), through boto3.

The only module that imports boto3, so the embedded default runs without it. A boto3 client
is thread-safe but must not cross a fork: ``db.blobs.factory`` makes one per process.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import IO, Any, BinaryIO

import boto3
import botocore.exceptions
from botocore.config import Config

from db.blobs.keys import MIN_PART, MiB, check_key, check_part_number, check_prefix, check_range
from db.blobs.readers import StreamReader
from db.blobs.store import COPY_CHUNK, BlobNotFound, BlobStore, BlobWriter, Bytes, InvalidParts

MAX_CONNECTIONS = 40
"""Connections a client keeps: the API runs blocking calls on anyio's 40 threads, and a
smaller pool would open and drop a connection for each call past it."""
DELETE_BATCH = 1000
"""The most keys one DeleteObjects request takes."""

_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}  # HEAD's 404 has no body: "404"
_INVALID_PARTS = {"EntityTooSmall", "InvalidPart", "InvalidPartOrder"}
_BUCKET_EXISTS = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def s3_client(*, endpoint_url: str | None, region: str, access_key_id: str | None = None,
              secret_access_key: str | None = None) -> Any:
    """A boto3 S3 client; without keys, boto3's default chain (environment, instance role)."""
    config = Config(
        # Buckets in the path, not the host name: S3-compatible servers have no DNS per bucket.
        s3={"addressing_style": "path"},
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=MAX_CONNECTIONS,
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                        aws_access_key_id=access_key_id,
                        aws_secret_access_key=secret_access_key, config=config)


class S3BlobStore(BlobStore):
    """Blobs as objects of ``bucket``, each key under ``prefix``.

    ``part_size`` is what a writer buffers before it sends a part, so the memory one writer
    holds; with S3's 10,000 parts it also bounds a blob (8 MiB parts: 78 GiB).
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "", *,
                 part_size: int = 8 * MiB) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be at least {MIN_PART} bytes (S3's minimum part)")
        self.prefix = check_prefix(prefix if not prefix or prefix.endswith("/") else prefix + "/")
        self.client = client
        self.bucket = bucket
        self.part_size = part_size

    def ensure_bucket(self) -> None:
        """Creates the bucket if it is missing; one created meanwhile by another process is
        no error."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except botocore.exceptions.ClientError as error:
            if _code(error) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        region = self.client.meta.region_name
        # us-east-1 is S3's default location, which refuses to be named.
        where = {} if region in (None, "us-east-1") else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            self.client.create_bucket(Bucket=self.bucket, **where)
        except botocore.exceptions.ClientError as error:
            if _code(error) not in _BUCKET_EXISTS:
                raise

    def writer(self, key: str) -> BlobWriter:
        return _S3Writer(self, check_key(key))

    def put(self, key: str, data: Bytes | IO[bytes]) -> int:
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) <= self.part_size:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=bytes(data))
            return len(data)
        return super().put(key, data)

    def open(self, key: str) -> BinaryIO:
        with _not_found(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        return io.BufferedReader(StreamReader(body), buffer_size=COPY_CHUNK)  # type: ignore[return-value]

    def get(self, key: str) -> bytes:
        with _not_found(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return bytes(body.read())

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        if length == 0:
            self.size(key)  # a Range header cannot ask for nothing, but a missing key is missing
            return b""
        try:
            with _not_found(key):
                answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                                Range=f"bytes={start}-{start + length - 1}")
                return bytes(answer["Body"].read())
        except botocore.exceptions.ClientError as error:
            if _code(error) == "InvalidRange":  # 416: the range starts at or past the end
                return b""
            raise

    def size(self, key: str) -> int:
        with _not_found(key):
            answer = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return int(answer["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix):]

    def _delete_many(self, keys: list[str]) -> int:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self._key(key)} for key in batch], "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise OSError(f"could not delete {first['Key']}: {first.get('Message')}")
        return len(keys)

    def start_multipart(self, key: str) -> str:
        answer = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))
        return str(answer["UploadId"])

    def put_part(self, key: str, upload_id: str, number: int, data: Bytes) -> str:
        check_part_number(number)
        with _not_found(key):
            answer = self.client.upload_part(Bucket=self.bucket, Key=self._key(key),
                                             UploadId=upload_id, PartNumber=number,
                                             Body=bytes(data))
        return str(answer["ETag"])

    def complete_multipart(self, key: str, upload_id: str,
                           parts: Sequence[tuple[int, str]]) -> None:
        listed = [{"PartNumber": number, "ETag": tag} for number, tag in sorted(parts)]
        try:
            with _not_found(key):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                    MultipartUpload={"Parts": listed})
        except botocore.exceptions.ClientError as error:
            if _code(error) in _INVALID_PARTS:
                message = error.response.get("Error", {}).get("Message", "")
                raise InvalidParts(f"upload {upload_id} of {key}: {_code(error)}: {message}") \
                    from None
            raise

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(BlobNotFound), _not_found(key):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key),
                                               UploadId=upload_id)

    def _abort_multiparts(self, prefix: str) -> int:
        aborted = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for upload in page.get("Uploads", []):
                with contextlib.suppress(BlobNotFound), _not_found(upload["Key"]):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)


class _S3Writer(BlobWriter):
    """Holds at most one part: a single PUT if the blob fits in one, else a multipart upload
    that ``commit`` completes and ``abort`` aborts."""

    def __init__(self, store: S3BlobStore, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[tuple[int, str]] = []

    def _write(self, data: memoryview) -> int:
        self._buffer += data
        size = self._store.part_size
        if len(self._buffer) >= size:
            sent = 0
            with memoryview(self._buffer) as view:
                while len(self._buffer) - sent >= size:
                    self._send_part(view[sent:sent + size])
                    sent += size
            del self._buffer[:sent]  # after the view is released: a bytearray with one can't
        return len(data)

    def _send_part(self, data: Bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._store.start_multipart(self.key)
        number = len(self._parts) + 1
        self._parts.append((number, self._store.put_part(self.key, self._upload_id, number,
                                                         data)))

    def _commit(self) -> None:
        if self._upload_id is None:
            self._store.client.put_object(Bucket=self._store.bucket,
                                          Key=self._store._key(self.key),
                                          Body=bytes(self._buffer))
        else:
            if self._buffer:
                self._send_part(self._buffer)
            self._store.complete_multipart(self.key, self._upload_id, self._parts)
        self._buffer = bytearray()

    def _abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            self._store.abort_multipart(self.key, self._upload_id)


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _not_found(key: str) -> Iterator[None]:
    """Turns S3's "no such key" and "no such upload" into BlobNotFound."""
    try:
        yield
    except botocore.exceptions.ClientError as error:
        if _code(error) in _NOT_FOUND:
            raise BlobNotFound(key) from None
        raise
