"""Blob stores for tests: an S3 store of its own on the session's SeaweedFS, and what a
failed write may have left behind in either store."""

from __future__ import annotations

import uuid
from typing import Any

from bench.seaweed import BUCKET
from db.blobs.keys import MIN_PART
from db.blobs.local import LocalBlobStore
from db.blobs.s3 import S3BlobStore
from db.blobs.store import BlobStore


def s3_store(client: Any, *, part_size: int = MIN_PART) -> S3BlobStore:
    """A store under a fresh prefix of the session's bucket, so tests sharing the server never
    see each other's keys; the smallest parts S3 allows keep multipart tests small."""
    return S3BlobStore(client, BUCKET, prefix=f"test-{uuid.uuid4().hex[:12]}",
                       part_size=part_size)


def leftovers(store: BlobStore) -> list[str]:
    """What unfinished writes left: the keys of unfinished multipart uploads, and (local)
    the names of temporary files."""
    if isinstance(store, LocalBlobStore):
        uploads = [(d / "key").read_text() for d in (store.root / ".multipart").iterdir()]
        return sorted(uploads + [path.name for path in (store.root / ".tmp").iterdir()])
    assert isinstance(store, S3BlobStore)
    answer = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return sorted(upload["Key"].removeprefix(store.prefix)
                  for upload in answer.get("Uploads", []))
