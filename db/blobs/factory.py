"""The blob store of this process, as the settings describe it: one per process.

Made on first use, so that importing the API or a worker opens no connection, and made again
in a forked child (Celery's prefork pool): a boto3 client holds sockets and locks that must
not cross a fork.
"""

from __future__ import annotations

import os
import threading

from db.blobs.local import LocalBlobStore
from db.blobs.store import BlobStore
from db.settings import Settings

_stores: dict[tuple[object, ...], BlobStore] = {}
_lock = threading.Lock()


def blob_store(settings: Settings) -> BlobStore:
    """The store of ``settings`` for this process; on S3 its bucket is created if missing.
    Raises what the S3 client raises if the endpoint refuses (wrong keys, no such host)."""
    key = (os.getpid(), *_identity(settings))
    store = _stores.get(key)
    if store is not None:
        return store
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _make(settings)
            # Stores made before a fork belong to the parent: this process never uses them.
            for old in [old for old in _stores if old[0] != key[0]]:
                del _stores[old]
            _stores[key] = store
        return store


def _identity(settings: Settings) -> tuple[object, ...]:
    # Settings are not hashable; these fields are all that a store is made of.
    if settings.blob_store == "local":
        return ("local", settings.blob_dir)
    secret = settings.s3_secret_access_key
    return ("s3", settings.s3_endpoint_url, settings.s3_region, settings.s3_bucket,
            settings.s3_prefix, settings.s3_part_bytes, settings.s3_access_key_id,
            None if secret is None else secret.get_secret_value())


def _make(settings: Settings) -> BlobStore:
    if settings.blob_store == "local":
        return LocalBlobStore(settings.blob_dir)
    from db.blobs.s3 import S3BlobStore, s3_client  # boto3: only where S3 is configured

    secret = settings.s3_secret_access_key
    client = s3_client(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                       access_key_id=settings.s3_access_key_id,
                       secret_access_key=None if secret is None else secret.get_secret_value())
    store = S3BlobStore(client, settings.s3_bucket, settings.s3_prefix,
                        part_size=settings.s3_part_bytes)
    store.ensure_bucket()
    return store


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork: the child's copy would stay
    # locked for ever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
