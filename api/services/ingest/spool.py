"""The ingest shuffle of a stream (``core.splits``), with one bucket of it in memory.

Pass 1 appends each row, as it arrives, to the temporary file of its bucket; pass 2 reads the
buckets back one at a time, permutes each by ``bucket_order`` and hands its rows on. The
result is ``rows[ingest_order(n)]``, bit for bit, whatever the batches were.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from api.services.ingest.table import MiB
from core.splits import INGEST_BUCKETS, bucket_order, ingest_buckets

SPOOL_MEMORY = 64 * 1024
"""What a bucket holds in memory before it goes to a file: a small upload never touches the
disk, and all buckets together hold at most 16 MiB."""
PART_BYTES = 4 * MiB
"""Rows handed on at a time in pass 2: the permuted copy beside the bucket stays small."""


def record_dtype(x_dtype: np.dtype, width: int, y_width: int) -> np.dtype:
    """A spooled row: X, y's values as floats, y's label code (``labels.Labels.take``)."""
    return np.dtype([("X", x_dtype, (width,)), ("y", "<f8", (y_width,)), ("code", "<i4")])


class BucketSpool:
    """Rows of ``record`` dtype, taken in upload order and given back in stored order.

    Its files are unnamed temporary files (in ``tmp_dir``, else the system's): they vanish
    when closed, or with the process, on every path.
    """

    def __init__(self, record: np.dtype, tmp_dir: Path | None = None) -> None:
        self.record, self.tmp_dir = record, tmp_dir
        self.files: list[IO[bytes] | None] = [None] * INGEST_BUCKETS
        self.counts = np.zeros(INGEST_BUCKETS, dtype=np.int64)
        self.rows = 0

    def add(self, records: np.ndarray) -> None:
        """The next rows of the upload."""
        buckets = ingest_buckets(self.rows, len(records))
        grouped = np.ascontiguousarray(records[np.argsort(buckets, kind="stable")])
        raw = grouped.view(np.uint8)
        counts = np.bincount(buckets, minlength=INGEST_BUCKETS)
        ends = np.cumsum(counts) * self.record.itemsize
        for bucket in np.flatnonzero(counts).tolist():
            file = self.files[bucket]
            if file is None:
                file = self.files[bucket] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    max_size=SPOOL_MEMORY, dir=None if self.tmp_dir is None else str(self.tmp_dir))
            start = int(ends[bucket]) - int(counts[bucket]) * self.record.itemsize
            file.write(raw[start:int(ends[bucket])].data)
        self.counts += counts
        self.rows += len(records)

    def drain(self) -> Iterator[np.ndarray]:
        """Every row in stored order, ``PART_BYTES`` at a time; each bucket's file is closed
        once read."""
        part = max(1, PART_BYTES // self.record.itemsize)
        for bucket, file in enumerate(self.files):
            if file is None:
                continue
            file.seek(0)
            rows = np.frombuffer(file.read(), dtype=self.record)
            self.files[bucket] = None
            file.close()
            if len(rows) != self.counts[bucket]:
                raise OSError(f"bucket {bucket} of the ingest spool lost rows: "
                              f"{len(rows)} of {self.counts[bucket]}")
            order = bucket_order(bucket, len(rows))
            for start in range(0, len(rows), part):
                yield rows[order[start:start + part]]

    def close(self) -> None:
        for bucket, file in enumerate(self.files):
            if file is not None:
                self.files[bucket] = None
                file.close()
