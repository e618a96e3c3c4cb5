"""The prediction cache: least recently used models leave first, within a byte budget."""

from __future__ import annotations

import numpy as np

from api.model_cache import ModelCache
from core.data import TargetEncoding
from core.model import Model
from core.network import Network


def _model(params: int) -> Model:
    net = Network((params - 1, 1), "relu", "linear", "mse", np.dtype(np.float64))
    return Model(net, TargetEncoding("regression", None, 1), np.zeros(params), {})


def test_the_least_recently_used_model_leaves_to_keep_the_budget() -> None:
    cache = ModelCache(max_bytes=3 * 800)  # three models of 100 float64 parameters
    for job_id in ("a", "b", "c"):
        cache.put(job_id, _model(100))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", _model(100))
    assert cache.get("b") is None and len(cache) == 3
    assert all(cache.get(job_id) is not None for job_id in ("a", "c", "d"))
    cache.put("big", _model(400))  # past the whole budget: not kept, nothing evicted
    assert cache.get("big") is None and len(cache) == 3
