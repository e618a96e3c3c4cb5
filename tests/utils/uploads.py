"""Resumable uploads in tests: stand-ins for the streaming ingest, and tus requests.

The protocol's tests put a stand-in in the ingest's place (``create_app(ingest=...)``), to
see exactly what it was given: the "dataset" of ``digest_ingest`` is one row whose sha256 is
the digest of the bytes it read. The real ingest has tests of its own (tests/api/ingest/),
and tests/e2e/test_resumable_uploads.py runs the two together.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from core.data import InvalidDataError
from db.base import new_id
from db.blobs import BlobStore
from db.models import Dataset
from db.queries.datasets import DatasetFacts
from db.settings import Settings

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
BAD_PREFIX = b"not data"
"""A file starting so is refused by ``digest_ingest``, naming a row."""


def digest_ingest(source: BinaryIO, *, fmt: str, target: str | None, store: BlobStore,
                  settings: Settings, known: Callable[[str], Dataset | None],
                  record: Callable[[str, DatasetFacts], tuple[Dataset, bool]]
                  ) -> tuple[Dataset, bool]:
    """A one-row dataset whose sha256 is that of the bytes of ``source``."""
    digest, size = hashlib.sha256(), 0
    first = source.read(len(BAD_PREFIX))
    if first == BAD_PREFIX:
        raise InvalidDataError("row 3: a ragged row (2 values, the header has 3)")
    source.seek(0)
    while chunk := source.read(MiB):
        digest.update(chunk)
        size += len(chunk)
    existing = known(digest.hexdigest())
    if existing is not None:
        return existing, False
    return record(new_id(), DatasetFacts(
        sha256=digest.hexdigest(), size_bytes=size, n_rows=1, n_features=1, task="regression",
        classes=None))


class Gate:
    """An ingest that waits at ``entered`` until ``release`` is set (then digests)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, source: BinaryIO, **kwargs: Any) -> tuple[Dataset, bool]:
        self.calls += 1
        self.entered.set()
        self.release.wait(30)
        return digest_ingest(source, **kwargs)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def write_random(path: Path, size: int, block: int = MiB) -> str:
    """A file of ``size`` pseudo-random bytes (one random block repeated with a counter, fast
    to make); returns its sha256."""
    import os

    seed = os.urandom(block)
    digest = hashlib.sha256()
    with path.open("wb") as file:
        written, n = 0, 0
        while written < size:
            piece = (n.to_bytes(8, "little") + seed)[:min(block, size - written)]
            file.write(piece)
            digest.update(piece)
            written += len(piece)
            n += 1
    return digest.hexdigest()
