"""Loaded models for prediction, least recently used first out, bounded by their size."""

from __future__ import annotations

import threading

from cachetools import LRUCache

from core.model import Model

MiB = 1024 * 1024


def _size(model: Model) -> int:
    return int(model.params.nbytes)


class ModelCache:
    """Models by job id; at most ``max_bytes`` of parameters are kept.

    Only models that can no longer change belong here (final weights of finished jobs), so an
    entry never needs invalidating. Routes run in a thread pool, hence the lock.
    """

    def __init__(self, max_bytes: int = 256 * MiB) -> None:
        self.max_bytes = max_bytes
        self._models: LRUCache[str, Model] = LRUCache(maxsize=max_bytes, getsizeof=_size)
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Model | None:
        with self._lock:
            return self._models.get(job_id)

    def put(self, job_id: str, model: Model) -> None:
        if _size(model) > self.max_bytes:
            return  # would evict everything else and still not fit
        with self._lock:
            self._models[job_id] = model

    def __len__(self) -> int:
        return len(self._models)
