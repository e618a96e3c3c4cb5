"""Loaded models for prediction, least recently used first out, bounded by their size."""

from __future__ import annotations

import threading
from collections import OrderedDict

from core.model import Model

MiB = 1024 * 1024


class ModelCache:
    """Models by job id; at most ``max_bytes`` of parameters are kept.

    Only models that can no longer change belong here (final weights of finished jobs), so an
    entry never needs invalidating. Routes run in a thread pool, hence the lock.
    """

    def __init__(self, max_bytes: int = 256 * MiB) -> None:
        self.max_bytes = max_bytes
        self._models: OrderedDict[str, Model] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Model | None:
        with self._lock:
            model = self._models.get(job_id)
            if model is not None:
                self._models.move_to_end(job_id)
            return model

    def put(self, job_id: str, model: Model) -> None:
        size = model.params.nbytes
        if size > self.max_bytes:
            return  # would evict everything else and still not fit
        with self._lock:
            old = self._models.pop(job_id, None)
            if old is not None:
                self._bytes -= old.params.nbytes
            self._models[job_id] = model
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._models.popitem(last=False)
                self._bytes -= evicted.params.nbytes

    def __len__(self) -> int:
        return len(self._models)
