"""blob_store(settings): one store per process and configuration, S3 buckets made when
missing, and a new store in a forked child."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from bench.seaweed import BUCKET, SeaweedS3
from db.blobs import blob_store
from db.blobs.local import LocalBlobStore
from db.blobs.s3 import S3BlobStore
from db.settings import Settings

pytestmark = pytest.mark.usefixtures("clean_settings")


def s3_settings(seaweed: SeaweedS3, bucket: str) -> Settings:
    return Settings(**seaweed.settings(bucket, prefix="factory"))  # type: ignore[arg-type]


def test_the_local_store_is_made_once_per_directory(tmp_path: Path) -> None:
    store = blob_store(Settings(blob_dir=tmp_path / "a"))
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "a"
    assert blob_store(Settings(blob_dir=tmp_path / "a")) is store  # equal settings, same store
    assert blob_store(Settings(blob_dir=tmp_path / "b")) is not store


def test_the_embedded_default_needs_no_boto3(tmp_path: Path) -> None:
    code = ("import sys; from db.blobs import blob_store; from db.settings import Settings; "
            f"blob_store(Settings(blob_dir={str(tmp_path)!r})).put('k', b'v'); "
            "print('boto3' in sys.modules, 'botocore' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.services
def test_the_s3_store_makes_its_bucket_when_missing(seaweed: SeaweedS3) -> None:
    bucket = f"shardtrain-factory-{uuid.uuid4().hex[:8]}"
    with pytest.raises(botocore.exceptions.ClientError):
        seaweed.client().head_bucket(Bucket=bucket)
    store = blob_store(s3_settings(seaweed, bucket))
    assert isinstance(store, S3BlobStore) and store.bucket == bucket
    store.put("x", b"written")
    assert blob_store(s3_settings(seaweed, bucket)) is store
    assert seaweed.client().get_object(Bucket=bucket, Key="factory/x")["Body"].read() \
        == b"written"


@pytest.mark.services
def test_a_bucket_made_meanwhile_by_another_process_is_no_error(seaweed: SeaweedS3) -> None:
    bucket = f"shardtrain-race-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=bucket)
    store = blob_store(s3_settings(seaweed, bucket))
    assert isinstance(store, S3BlobStore)

    class Late:
        """Says the bucket is missing, as a head_bucket just before another's creation."""

        def __init__(self, client: Any) -> None:
            self.client, self.meta = client, client.meta

        def head_bucket(self, **kwargs: Any) -> None:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "404", "Message": "Not Found"}}, "HeadBucket")

        def create_bucket(self, **kwargs: Any) -> Any:
            return self.client.create_bucket(**kwargs)

    S3BlobStore(Late(store.client), bucket).ensure_bucket()


@pytest.mark.services
def test_a_forked_child_makes_a_store_of_its_own(seaweed: SeaweedS3) -> None:
    settings = s3_settings(seaweed, BUCKET)
    parent = blob_store(settings)
    parent.put("before-fork", b"parent")
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery here, only an exit status
        status = 1
        try:
            child = blob_store(settings)
            if child is not parent and child.get("before-fork") == b"parent":
                child.put("from-child", str(os.getpid()).encode())
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.get("from-child") == str(pid).encode()
    assert blob_store(settings) is parent
