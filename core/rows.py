"""The rows a process holds: ranges of a dataset's stored order, fetched when first needed.

A worker reads rows from wherever the dataset is stored (``worker.loading`` gives a
``RowSource`` over the blob store); the core asks only for the ranges it computes on, so a
rank holds the rows of its shards and the leader those and the hold-out it evaluates. X stays
in the dtype it was stored in (uint8 rows stay uint8) and a step casts its batch; y is encoded
for the job's output once per range.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.data import DataShape, InvalidDataError, TargetEncoding, check_arrays
from core.splits import ingest_order


class RowSource(Protocol):
    """Where a dataset's rows are read from."""

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start .. stop - 1`` of the stored order: X ``(rows, features)`` in its
        stored dtype, and y as ``DataShape`` says (class indices, or targets)."""
        ...


class ArrayRows:
    """A dataset held in memory, as the service stores an upload of ``(X, y)``: its rows in
    ``core.splits.ingest_order`` (``split="contiguous"``) or as given (``"seeded"``), its
    labels as class indices."""

    def __init__(self, X: np.ndarray, y: np.ndarray, split: str = "contiguous") -> None:
        self.shape = DataShape.of(X, y, split)  # type: ignore[arg-type]
        X, y = check_arrays(X, y)
        if self.shape.classes is not None:
            y = np.searchsorted(self.shape.classes, y)
        if split == "contiguous":
            order = ingest_order(len(X))
            X, y = X[order], y[order]
        self.X, self.y = X, y

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.X[start:stop], self.y[start:stop]


@dataclass(frozen=True)
class Block:
    """Rows ``start .. start + len(X) - 1``: X as stored, Y encoded in the job's dtype."""

    start: int
    X: np.ndarray
    Y: np.ndarray

    @property
    def stop(self) -> int:
        return self.start + len(self.X)


class HeldRows:
    """The blocks of rows a job holds in this process, each fetched from ``source`` the first
    time a range in it is asked for."""

    def __init__(self, source: RowSource, encoding: TargetEncoding, dtype: np.dtype) -> None:
        self.source, self.encoding, self.dtype = source, encoding, np.dtype(dtype)
        self.blocks: list[Block] = []
        self._lock = threading.Lock()  # a leader may evaluate while a re-plan fetches

    def block(self, start: int, stop: int) -> Block:
        """A held block that covers rows ``start .. stop - 1``, fetched if none does."""
        with self._lock:
            for block in self.blocks:
                if block.start <= start and stop <= block.stop:
                    return block
            X, y = self.source.read(start, stop)
            if len(X) != stop - start:
                raise InvalidDataError(f"rows {start}..{stop - 1} are not all stored "
                                       f"(got {len(X)})")
            block = Block(start, X, self.encoding.encode_rows(y, self.dtype))
            self.blocks.append(block)
            return block

    @property
    def nbytes(self) -> int:
        return sum(block.X.nbytes + block.Y.nbytes for block in self.blocks)

