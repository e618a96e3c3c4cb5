"""Optimizer state: what a checkpoint and a local SGD round carry, as raw arrays."""

from __future__ import annotations

import numpy as np
import pytest

from core.optimizers import (
    load_shard_states,
    load_state_arrays,
    make_optimizer,
    shard_states,
    state_arrays,
)
from core.spec import OptimizerSpec


@pytest.mark.parametrize("spec", [OptimizerSpec(name="sgd", lr=0.1, momentum=0.9),
                                  OptimizerSpec(name="sgd", lr=0.1, momentum=0.5, nesterov=True),
                                  OptimizerSpec(name="adam", lr=0.01)])
def test_state_round_trips_through_raw_bytes_and_continues_identically(
        spec: OptimizerSpec) -> None:
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(4, 50)).astype(np.float32)
    first = make_optimizer(spec, 50, np.dtype(np.float32))
    params = np.ones(50, dtype=np.float32)
    for grad in grads[:2]:
        first.step(params, grad)
    # As a rank gets it: the bytes of each array, not the arrays.
    second = make_optimizer(spec, 50, np.dtype(np.float32))
    load_state_arrays(second, [a.tobytes() for a in state_arrays(first)])
    other = params.copy()
    for grad in grads[2:]:
        first.step(params, grad)
        second.step(other, grad)
    assert np.array_equal(params, other)


def test_sgd_without_momentum_keeps_no_state() -> None:
    sgd = make_optimizer(OptimizerSpec(name="sgd", lr=0.1), 1000, np.dtype(np.float32))
    assert state_arrays(sgd) == []
    params = np.ones(1000, dtype=np.float32)
    sgd.step(params, np.full(1000, 0.25, dtype=np.float32))
    assert np.all(params == 0.75)


def test_shard_states_round_trip_shard_by_shard() -> None:
    spec = OptimizerSpec(name="adam", lr=0.01)
    rng = np.random.default_rng(1)
    sent = [make_optimizer(spec, 20, np.dtype(np.float64)) for _ in range(4)]
    for optimizer in sent:
        optimizer.step(np.zeros(20), rng.normal(size=20))
    # A rank holds shards 1 and 3 only, by shard id.
    held = {shard: make_optimizer(spec, 20, np.dtype(np.float64)) for shard in (1, 3)}
    load_shard_states(held, [1, 3], [a.tobytes() for a in shard_states(sent, [1, 3])])
    for shard in (1, 3):
        for got, want in zip(state_arrays(held[shard]), state_arrays(sent[shard]), strict=True):
            assert np.array_equal(got, want)
