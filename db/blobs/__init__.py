"""The blob store that the API and the workers share: dataset content, checkpoints, weights.

``blob_store(settings)`` gives this process's store: a local directory (the embedded default,
``local``) or an S3 bucket (``s3``). The core knows nothing of it; SQL keeps the keys, sizes
and digests of what it holds.
"""

from db.blobs.factory import blob_store
from db.blobs.keys import MIN_PART, check_key
from db.blobs.store import BlobNotFound, BlobStore, BlobWriter, InvalidParts

__all__ = ["MIN_PART", "BlobNotFound", "BlobStore", "BlobWriter", "InvalidParts", "blob_store",
           "check_key"]
