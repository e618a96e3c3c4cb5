"""An upload into a stored dataset: read in batches, checked and digested as they pass,
spooled by bucket; then, unless the tenant has that content already, written in the ``rows``
layout (``db.blobs.datasets``) in ``core.splits.ingest_order`` and recorded.

Memory: one batch, one bucket (1/256 of the rows) and a part per blob writer, whatever the
size. Disk: the spool holds the rows once, in the temporary directory, until the end.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

import numpy as np

from api.services.dataset_files import UploadFormat
from api.services.ingest.digest import dataset_digest
from api.services.ingest.features import Features, over_limit
from api.services.ingest.labels import Labels, Targets
from api.services.ingest.readers import open_table
from api.services.ingest.spool import BucketSpool, record_dtype
from api.services.ingest.table import Limits, Table, array_table
from core.data import InvalidDataError
from db.base import new_id
from db.blobs import BlobStore
from db.blobs.datasets import Manifest, RowsWriter, dataset_prefix
from db.models import Dataset
from db.queries.datasets import DatasetFacts
from db.settings import Settings

Known = Callable[[str], Dataset | None]
"""The tenant's dataset of a content digest, if it has one."""
Record = Callable[[str, DatasetFacts], tuple[Dataset, bool]]
"""Records the dataset stored under an id; gives the tenant's dataset of that content and
whether it is this one (False: another upload of it won a race, and these blobs go)."""


def ingest(source: BinaryIO, *, fmt: UploadFormat, target: str | None, store: BlobStore,
           settings: Settings, known: Callable[[str], Dataset | None],
           record: Callable[[str, DatasetFacts], tuple[Dataset, bool]]) -> tuple[Dataset, bool]:
    """Stream ``source`` (a seekable binary file: a request body, or an upload's blob through
    store.open_seekable) into a dataset: read in batches, check, digest; unless ``known(sha256)``
    finds the tenant's dataset of that content (then it is returned with False), write the rows
    layout under a new id and ``record(dataset_id, facts)`` it. Raises InvalidDataError /
    InvalidInput naming the problem (and the row, as uploaded); leaves nothing behind on any
    error: no blobs, no temporary files."""
    limits = Limits.of(settings)
    here = source.tell()
    size = source.seek(0, io.SEEK_END) - here
    source.seek(here)
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise over_limit(f"the upload holds {size} bytes, more than the limit "
                         f"max_dataset_bytes={limits.max_bytes}")
    with open_table(source, fmt=fmt, target=target,
                    max_json_bytes=settings.max_body_bytes) as table:
        return ingest_table(table, store=store, limits=limits,
                            tmp_dir=settings.ingest_tmp_dir, known=known, record=record)


def ingest_arrays(X: np.ndarray, y: np.ndarray, *, store: BlobStore, known: Known,
                  record: Record, limits: Limits | None = None,
                  tmp_dir: Path | None = None) -> tuple[Dataset, bool]:
    """``ingest`` of arrays in memory: the same checks, digest and stored rows."""
    return ingest_table(array_table(X, y), store=store, limits=limits or Limits(),
                        tmp_dir=tmp_dir, known=known, record=record)


def ingest_table(table: Table, *, store: BlobStore, limits: Limits, tmp_dir: Path | None,
                 known: Known, record: Record) -> tuple[Dataset, bool]:
    """``ingest`` of an opened upload."""
    features, labels = Features(table, limits), Labels(table)
    spool: BucketSpool | None = None
    try:
        with closing(table.batches) as batches:
            for batch in batches:
                X = features.take(batch.X, batch.start)
                values, codes = labels.take(batch.y, batch.start)
                if spool is None:
                    spool = BucketSpool(record_dtype(features.dtype, features.width,
                                                     values.shape[1]), tmp_dir)
                rows = np.empty(len(X), dtype=spool.record)
                rows["X"], rows["y"], rows["code"] = X, values, codes
                spool.add(rows)
        if spool is None:
            raise InvalidDataError("the upload holds no rows")
        targets = labels.finish()
        sha256 = dataset_digest(features, targets)
        existing = known(sha256)
        if existing is not None:
            return existing, False
        dataset_id = new_id()
        manifest = _write(store, dataset_id, spool, features, targets)
    finally:
        if spool is not None:
            spool.close()
    facts = DatasetFacts(
        sha256=sha256, size_bytes=manifest.nbytes, n_rows=features.rows,
        n_features=features.width, task=targets.task, classes=targets.classes,
        n_targets=targets.n_targets,
        target_min=targets.target_range[0] if targets.target_range else None,
        target_max=targets.target_range[1] if targets.target_range else None,
        beyond_float32=list(features.beyond_float32 or targets.beyond_float32 or ()) or None)
    try:
        dataset, created = record(dataset_id, facts)
    except BaseException:
        store.delete_prefix(dataset_prefix(dataset_id) + "/")
        raise
    if not created:  # a concurrent upload of the same content recorded it first
        store.delete_prefix(dataset_prefix(dataset_id) + "/")
    return dataset, created


def _write(store: BlobStore, dataset_id: str, spool: BucketSpool, features: Features,
           targets: Targets) -> Manifest:
    """Pass 2: the spooled rows in stored order into the ``rows`` layout (nothing is left of
    it if this fails)."""
    with RowsWriter(store, dataset_id, x_dtype=features.dtype, x_width=features.width,
                    y_dtype=targets.stored_dtype, y_width=targets.width) as writer:
        for rows in spool.drain():
            writer.append(rows["X"], targets.stored(rows["y"], rows["code"]))
        return writer.commit()
