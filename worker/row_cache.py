"""The rows a worker process keeps between jobs, so the next job on a dataset starts at once.

A job reads ranges of rows (a rank its shards, the leader those and the hold-out); each range
read from the store is kept here, bounded by bytes (``row_cache_bytes``), the least recently
used going first. A job holds the very arrays kept here, read-only, so keeping them costs no
second copy. The next job on the same dataset, split the same way (a sweep, a retry), reads
nothing; a range inside a kept one is a view of it.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
from cachetools import LRUCache

from core.rows import RowSource

Rows = tuple[np.ndarray, np.ndarray]


class RowCache:
    """Ranges of rows by (dataset id, start, stop), at most ``max_bytes`` of them."""

    def __init__(self, max_bytes: int) -> None:
        self._ranges: LRUCache[tuple[str, int, int], Rows] = LRUCache(
            maxsize=max(1, max_bytes), getsizeof=lambda rows: rows[0].nbytes + rows[1].nbytes)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def rows(self, dataset_id: str, start: int, stop: int, source: RowSource) -> Rows:
        """Rows ``start .. stop - 1`` of the dataset, kept or read from ``source``."""
        with self._lock:
            for (kept_id, lo, hi), (X, y) in self._ranges.items():
                if kept_id == dataset_id and lo <= start and stop <= hi:
                    self._ranges[kept_id, lo, hi]
                    return X[start - lo:stop - lo], y[start - lo:stop - lo]
        X, y = source.read(start, stop)
        X.flags.writeable = y.flags.writeable = False
        with self._lock:
            if X.nbytes + y.nbytes <= self._ranges.maxsize:
                self._ranges[dataset_id, start, stop] = (X, y)
        return X, y

    @property
    def nbytes(self) -> int:
        return int(self._ranges.currsize)


class CachedRows:
    """A dataset's ``RowSource`` through the process's ``RowCache``."""

    def __init__(self, cache: RowCache, dataset_id: str, source: RowSource) -> None:
        self._cache, self._dataset_id, self._source = cache, dataset_id, source

    def read(self, start: int, stop: int) -> Rows:
        return self._cache.rows(self._dataset_id, start, stop, self._source)


@lru_cache(maxsize=1)
def row_cache(max_bytes: int) -> RowCache:
    """This process's cache."""
    return RowCache(max_bytes)
