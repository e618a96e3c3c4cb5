"""Data-parallel invariants of SPEC section 4, checked on the core alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.job import JobData, ShardSet
from core.spec import ModelSpec, OptimizerSpec, TrainSpec
from core.splits import StepPlan, holdout, shard_bounds
from core.training import Trainer
from tests.utils.data import blobs
from tests.utils.gradients import mean_gradient
from tests.utils.training import local_sgd_at_every_step, over_ranks


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 400), batch=st.integers(1, 64), shards=st.integers(1, 9))
def test_step_plan_covers_every_row_once_with_near_equal_shares(n: int, batch: int,
                                                                shards: int) -> None:
    if n < shards or batch < shards:
        return
    bounds = shard_bounds(n, shards)
    sizes = np.diff(bounds)
    assert sizes.max() - sizes.min() <= 1
    plan = StepPlan.build(n, batch, shards)
    assert plan.steps_per_epoch == -(-n // batch)
    # Every step draws the global batch (the last one what is left), split within one row.
    totals = plan.shares.sum(axis=1)
    assert (totals[:-1] == batch).all() and totals[-1] == n - (len(totals) - 1) * batch
    assert (plan.shares.max(axis=1) - plan.shares.min(axis=1) <= 1).all()
    # Over an epoch every shard passes over exactly its own rows, contiguously.
    np.testing.assert_array_equal(plan.shares.sum(axis=0), sizes)
    np.testing.assert_array_equal(plan.starts[1:], np.cumsum(plan.shares, axis=0)[:-1])


def _spec(**kw: object) -> TrainSpec:
    base: dict = dict(model=ModelSpec(hidden=(6,), activation="tanh"), dtype="float64",
                      optimizer=OptimizerSpec(lr=0.1), epochs=2, batch_size=16,
                      validation_fraction=0.0, seed=3)
    base.update(kw)
    return TrainSpec(**base)


@settings(max_examples=60, deadline=None)
@given(shards=st.integers(1, 8), batch=st.integers(8, 40), n=st.integers(40, 160),
       hidden=st.lists(st.integers(1, 8), min_size=1, max_size=3), step=st.integers(0, 20),
       seed=st.integers(0, 1000))
def test_row_weighted_shard_average_equals_union_batch_gradient(
        shards: int, batch: int, n: int, hidden: list[int], step: int, seed: int) -> None:
    X, y = blobs(n=n, seed=seed)
    spec = _spec(model=ModelSpec(hidden=tuple(hidden), activation="sigmoid"), shards=shards,
                 batch_size=batch, seed=seed)
    job = JobData.prepare(spec, X, y)
    step %= job.total_steps
    params = job.net.init_params(seed, "xavier")
    shard_set = ShardSet(job, range(shards))
    rows = job.step_rows(step)

    total, scratch = job.net.empty(), job.net.empty()
    union: list[int] = []  # the rows drawn, by their place in the stored order
    inputs, targets = [], []
    epoch, within = divmod(step, job.steps_per_epoch)
    for shard in range(shards):
        _, used = shard_set.gradient(shard, step, params, scratch, 1.0 / rows)
        total += scratch
        start = job.plan.starts[within, shard]
        block = shard_set._block(shard)[0]
        drawn = shard_set._epoch_rows(shard, epoch)[start:start + used]
        union.extend((block.start + drawn).tolist())
        inputs.append(block.X[drawn].astype(job.net.dtype))
        targets.append(block.Y[drawn])
    assert len(union) == rows == len(set(union))

    _, expected = mean_gradient(job.net, params, np.concatenate(inputs),
                                np.concatenate(targets))
    np.testing.assert_allclose(total, expected, rtol=1e-10, atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(shards=st.integers(1, 5), seed=st.integers(0, 100))
def test_local_sgd_with_k_1_equals_gradient_averaging(shards: int, seed: int) -> None:
    X, y = blobs(n=90, seed=seed)
    exact = Trainer(_spec(shards=shards, seed=seed), X, y)
    local = local_sgd_at_every_step(_spec(shards=shards, seed=seed), X, y)
    assert local.local and len(local.optimizers) == shards
    exact.run()
    local.run()
    np.testing.assert_allclose(local.params, exact.params, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sync_every", [1, 3])
def test_any_grouping_of_shards_gives_bit_identical_weights(sync_every: int) -> None:
    X, y = blobs(n=300, seed=1, dtype=np.float32)
    spec = _spec(shards=6, batch_size=30, dtype="float32", epochs=3, sync_every=sync_every,
                 optimizer=OptimizerSpec(name="adam", lr=0.01), l2=1e-3)
    rng = np.random.default_rng(0)
    groupings = [[[0, 1, 2, 3, 4, 5]], [[s] for s in range(6)], [[5, 0], [3], [1, 4, 2]]]
    for _ in range(3):
        order = rng.permutation(6)
        cuts = sorted(rng.choice(np.arange(1, 6), size=2, replace=False))
        groupings.append([list(g) for g in np.split(order, cuts)])
    results = []
    for groups in groupings:
        trainer = over_ranks(spec, X, y, groups)
        trainer.run()
        results.append(trainer.params)
    for params in results[1:]:
        assert np.array_equal(params, results[0])


def test_local_sgd_is_rounds_of_replica_steps_averaged_by_rows() -> None:
    # SPEC 4.4 written out plainly: K steps of plain SGD per shard on its own replica, then
    # the parameters are the replicas' mean weighted by the rows each shard drew (rounds also
    # end at epoch ends: 75 training rows in batches of 16 are 5 steps an epoch).
    X, y = blobs(n=75, seed=4)
    spec = _spec(shards=3, epochs=2, sync_every=3, validation_fraction=0.0)
    trainer = Trainer(spec, X, y)
    job, params = trainer.job, trainer.params.copy()
    shard_set, grad = ShardSet(job, range(3)), job.net.empty()
    for start, end in [(0, 3), (3, 5), (5, 6), (6, 9), (9, 10)]:
        replicas, rows = [params.copy() for _ in range(3)], np.zeros(3)
        for step in range(start, end):
            for shard, replica in enumerate(replicas):
                own = job.plan.shares[step % 5, shard]
                shard_set.gradient(shard, step, replica, grad, 0.1 / own)
                replica -= grad
                rows[shard] += own
        params = sum(r * w for r, w in zip(replicas, rows / rows.sum(), strict=True))
    trainer.run()
    assert trainer.step == 10
    np.testing.assert_allclose(trainer.params, params, rtol=1e-12, atol=1e-14)


def test_local_sgd_averages_and_still_learns() -> None:
    X, y = blobs(n=400, seed=2)
    exact = Trainer(_spec(shards=4, epochs=5), X, y).run()
    local = Trainer(_spec(shards=4, epochs=5, sync_every=4), X, y).run()
    assert local.final_train_loss < 0.5
    assert abs(local.final_train_loss - exact.final_train_loss) < 0.2


def test_holdout_is_seeded_and_disjoint() -> None:
    train, val = holdout(100, 0.2, seed=5)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val)
    again, _ = holdout(100, 0.2, seed=5)
    np.testing.assert_array_equal(train, again)
    other, _ = holdout(100, 0.2, seed=6)
    assert not np.array_equal(train, other)
