"""What a blob key, a key prefix, a byte range and a multipart part may be.

Keys are relative, ``/``-separated paths of ``[A-Za-z0-9._-]`` segments, none empty and none
starting with a dot: ``datasets/<id>/X.bin``. They map to file paths in the local store, so
``..``, absolute paths and dot-names (the store's own ``.tmp`` and ``.multipart``) are refused.
"""

from __future__ import annotations

import re

MiB = 1024 * 1024
MIN_PART = 5 * MiB
"""The smallest part S3 accepts before the last one of a multipart upload."""
MAX_PARTS = 10_000
"""The most parts one S3 multipart upload may have."""
MAX_KEY_LENGTH = 900
"""S3 allows 1,024 bytes of key; the rest is left to a deployment's ``S3_PREFIX``."""

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_key(key: str) -> str:
    """``key`` itself; raises ValueError if it is not a valid blob key."""
    if len(key) > MAX_KEY_LENGTH or not all(_SEGMENT.fullmatch(s) for s in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}: '/'-separated segments of "
                         "[A-Za-z0-9._-], none empty or starting with '.'")
    return key


def check_prefix(prefix: str) -> str:
    """``prefix`` itself, a key or a key and a trailing '/' or ""; raises ValueError if not."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


def check_range(start: int, length: int) -> None:
    """Raises ValueError for a negative start or length."""
    if start < 0 or length < 0:
        raise ValueError(f"invalid range: start {start}, length {length}")


def check_part_number(number: int) -> None:
    """Raises ValueError for a part number outside 1..10,000."""
    if not 1 <= number <= MAX_PARTS:
        raise ValueError(f"part numbers run from 1 to {MAX_PARTS}, not {number}")
