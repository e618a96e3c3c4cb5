"""Whole runs of the core: learning, determinism, resumption, errors, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from core.checkpoint import model_from_state, restore, state_bytes
from core.data import InvalidDataError, check_arrays
from core.model import Model
from core.spec import ModelSpec, OptimizerSpec, SpecError, TrainSpec
from core.training import DivergedError, Trainer
from tests.utils.data import blobs, regression


def test_the_seed_network_learns_xor() -> None:
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    spec = TrainSpec(model=ModelSpec(hidden=(4,), activation="sigmoid", output="sigmoid"),
                     loss="mse", optimizer=OptimizerSpec(lr=2.0, momentum=0.9), epochs=1500,
                     batch_size=4, validation_fraction=0.0, seed=1)
    trainer = Trainer(spec, X, y)
    result = trainer.run()
    assert result.final_train_loss < 0.02
    np.testing.assert_array_equal(trainer.model().predict(X).labels, y)


def test_digits_reach_97_percent_on_a_seeded_quarter_hold_out() -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    spec = TrainSpec(model=ModelSpec(hidden=(64,), activation="relu"),
                     optimizer=OptimizerSpec(lr=0.1, momentum=0.9), epochs=30, batch_size=32,
                     validation_fraction=0.25, seed=7, shards=4)
    result = Trainer(spec, X / 16.0, y).run()
    assert result.final_val_accuracy is not None and result.final_val_accuracy >= 0.97


@pytest.mark.parametrize("optimizer", [OptimizerSpec(name="sgd", lr=0.05, momentum=0.9,
                                                     nesterov=True),
                                       OptimizerSpec(name="adam", lr=0.01)])
@pytest.mark.parametrize("sync_every", [1, 3])
def test_stop_restore_finish_is_bit_identical(optimizer: OptimizerSpec, sync_every: int) -> None:
    X, y = blobs(n=200, seed=4, dtype=np.float32)
    spec = TrainSpec(model=ModelSpec(hidden=(8, 5)), optimizer=optimizer, epochs=3,
                     batch_size=24, shards=3, sync_every=sync_every, l2=1e-4, seed=2)
    straight = Trainer(spec, X, y)
    straight_events = list(straight.steps())

    first = Trainer(spec, X, y)
    for _ in range(13):  # mid-epoch
        first.train_step()
    if sync_every > 1:
        # Step 13 is inside the round of steps 13 and 14: its state is whole at 14 only.
        assert not first.at_sync
        with pytest.raises(RuntimeError, match="inside a local SGD round"):
            state_bytes(first)
        first.train_step()
    stop = first.step
    state = state_bytes(first)
    resumed = Trainer(spec, X, y)
    restore(resumed, state)
    rest = list(resumed.steps())
    assert np.array_equal(resumed.params, straight.params)
    assert rest == straight_events[stop:]
    # A checkpoint alone yields the model at its step.
    at_stop = model_from_state(state)
    np.testing.assert_array_equal(at_stop.params, first.params)
    np.testing.assert_array_equal(at_stop.predict(X).outputs, first.model().predict(X).outputs)


def test_same_spec_and_seed_give_the_same_weights_and_another_seed_does_not() -> None:
    X, y = blobs(n=150, seed=0)
    spec = TrainSpec(epochs=2, batch_size=16, shards=2, seed=11)
    a, b = Trainer(spec, X, y), Trainer(spec, X, y)
    a.run()
    b.run()
    assert np.array_equal(a.params, b.params)
    c = Trainer(TrainSpec(epochs=2, batch_size=16, shards=2, seed=12), X, y)
    c.run()
    assert not np.array_equal(a.params, c.params)


def test_divergence_stops_with_the_step_and_keeps_finite_weights() -> None:
    X, y = regression(n=64)
    spec = TrainSpec(model=ModelSpec(hidden=(16,), activation="relu", output="linear"),
                     loss="mse", optimizer=OptimizerSpec(lr=1e3), epochs=50, batch_size=8,
                     validation_fraction=0.0)
    trainer = Trainer(spec, X * 100, y)
    with pytest.raises(DivergedError, match=r"diverged at step \d+") as info:
        trainer.run()
    assert info.value.step < 30
    assert trainer.step == info.value.step - 1
    assert np.all(np.isfinite(trainer.params))


def test_regression_and_float64() -> None:
    X, y = regression(n=200)
    spec = TrainSpec(model=ModelSpec(hidden=(16,), activation="tanh", output="linear"),
                     loss="mse", optimizer=OptimizerSpec(name="adam", lr=0.01), epochs=40,
                     batch_size=20, dtype="float64", shards=2)
    trainer = Trainer(spec, X, y)
    result = trainer.run()
    assert trainer.params.dtype == np.float64
    assert result.final_val_accuracy is None
    assert result.final_val_loss is not None and result.final_val_loss < 0.1
    assert trainer.model().predict(X).labels is None


def test_weights_npz_round_trip_predicts_the_same_and_initialises_a_new_run() -> None:
    X, y = blobs(n=120, classes=3, seed=3)
    labels = np.array(["cat", "dog", "eel"])[y]
    spec = TrainSpec(model=ModelSpec(hidden=(7,)), epochs=3, batch_size=10)
    trainer = Trainer(spec, X, labels)
    trainer.run()
    model = trainer.model()
    loaded = Model.from_npz(model.to_npz())
    np.testing.assert_array_equal(loaded.predict(X).outputs, model.predict(X).outputs)
    labels = loaded.predict(X).labels
    assert labels is not None and set(labels) <= {"cat", "dog", "eel"}
    # Plain numpy from the npz layout of SPEC section 7 gives the same outputs.
    arrays = model.to_arrays()
    a = X.astype(np.float32)
    a = np.maximum(a @ arrays["W1"] + arrays["b1"], 0)
    z = a @ arrays["W2"] + arrays["b2"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, model.predict(X).outputs, rtol=1e-5, atol=1e-6)

    beyond = X.astype(np.float64)
    beyond[4, 0] = -1e300  # an infinity in the float32 model, which a relu would hide
    with pytest.raises(InvalidDataError, match=r"X holds values beyond float32's .* row 4"):
        model.predict(beyond)

    warm = Trainer(spec, X, labels, init=arrays)
    np.testing.assert_array_equal(warm.params, trainer.params)
    with pytest.raises(ValueError, match="W1 have shape"):
        Trainer(TrainSpec(model=ModelSpec(hidden=(9,)), epochs=1), X, labels, init=arrays)


@pytest.mark.parametrize(("change", "field"), [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 2, "shards": 4}, "batch_size"),
    ({"loss": "cross_entropy", "model": {"output": "linear"}}, "loss"),
    ({"optimizer": {"lr": -0.1}}, "optimizer.lr"),
    ({"optimizer": {"lr": float("nan")}}, "optimizer.lr"),
    ({"optimizer": {"nesterov": True}}, "optimizer.nesterov"),
    ({"model": {"hidden": [4, 0]}}, "model.hidden[1]"),
    ({"model": {"activation": "swish"}}, "model.activation"),
    ({"dtype": "float16"}, "dtype"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"learning_rate": 0.1}, "learning_rate"),
    ({"model": {"depth": 3}}, "model.depth"),
    ({"batch_size": 2**63}, "batch_size"),
    ({"sync_every": 2**63}, "sync_every"),
])
def test_bad_specs_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        TrainSpec.from_dict(change)
    assert info.value.field == field
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(("optimizer", "field"), [
    ({"name": "adam", "momentum": 0.9}, "optimizer.momentum"),
    ({"name": "sgd", "beta2": 0.99}, "optimizer.beta2"),
])
def test_a_setting_of_the_other_optimizer_is_refused_in_new_specs_only(
        optimizer: dict, field: str) -> None:
    """A stored spec (weights, a job accepted before the check) must still load."""
    spec = TrainSpec.from_dict({"optimizer": optimizer})
    with pytest.raises(SpecError) as info:
        spec.optimizer.check_all_used()
    assert info.value.field == field


def test_a_bound_only_below_is_said_so() -> None:
    with pytest.raises(SpecError, match=r"optimizer.lr: must be above 0, got -0.1"):
        TrainSpec.from_dict({"optimizer": {"lr": -0.1}})
    with pytest.raises(SpecError, match=r"l2: must be at least 0, got -1"):
        TrainSpec.from_dict({"l2": -1})


def test_a_seed_of_any_size_is_taken() -> None:
    X, y = blobs(n=40, seed=0)
    spec = TrainSpec.from_dict({"seed": 2**70, "epochs": 1, "batch_size": 8})
    assert Trainer(spec, X, y).run().steps == 4


@pytest.mark.parametrize(("X", "y", "message"), [
    (np.ones((5,)), np.zeros(5, dtype=int), "2-D"),
    (np.ones((5, 2)), np.zeros(4, dtype=int), "rows"),
    (np.array([[1.0, np.nan]] * 4), np.array([0, 1, 0, 1]), "NaN or Inf"),
    (np.array([[1.0, 2.0]] * 2 + [[-np.inf, 0.0]] * 2), np.array([0, 1, 0, 1]),
     r"NaN or Inf \(first at row 2\)"),
    (np.ones((4, 2)), np.array([0.0, np.inf, 1.0, 2.0]), "NaN or Inf"),
    (np.ones((4, 2)), np.zeros(4, dtype=int), "single class"),
    (np.ones((4, 2)), np.array([0.5, 1.0, 2.0, 3.0]), "cross_entropy needs class labels"),
    # Finite in float64, infinite once cast to the default float32.
    (np.array([[1.0, 2.0], [3.0, -1e300], [1.0, 2.0], [1e39, 0.0]]), np.array([0, 1, 0, 1]),
     r"X holds values beyond float32's range .* \(first at row 1\): train with dtype float64"),
])
def test_bad_data_is_named(X: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidDataError, match=message):
        Trainer(TrainSpec(batch_size=2, validation_fraction=0.0), X, y)


def test_regression_targets_beyond_float32_are_named_and_float64_takes_them() -> None:
    X, y = regression(n=20, features=3, outputs=1)
    y = y.astype(np.float64)
    y[5] = 1e39
    spec = {"epochs": 1, "batch_size": 4, "loss": "mse", "model": {"output": "linear"}}
    with pytest.raises(InvalidDataError, match=r"y holds values beyond float32's range .* row 5"):
        Trainer(TrainSpec.from_dict(spec), X, y)
    Trainer(TrainSpec.from_dict({**spec, "dtype": "float64"}), X, y)


def test_finite_data_whose_sum_overflows_is_accepted() -> None:
    # The finite check sums X in one pass; a finite sum is not what it requires.
    X = np.full((8, 2), np.finfo(np.float32).max, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(X.sum())
    assert check_arrays(X, np.arange(8) % 2)[0] is X


def test_more_shards_than_rows_is_refused() -> None:
    X, y = blobs(n=10)
    with pytest.raises(InvalidDataError, match="cannot fill 16 shards"):
        Trainer(TrainSpec(shards=16, batch_size=16, validation_fraction=0.0), X, y)


def test_training_steps_allocate_nothing_after_the_first() -> None:
    X, y = blobs(n=8192, features=100, classes=32, seed=0, dtype=np.float32)
    spec = TrainSpec(model=ModelSpec(hidden=(256, 128)), epochs=2, batch_size=2048, shards=2,
                     optimizer=OptimizerSpec(name="adam", lr=1e-3), validation_fraction=0.0)
    trainer = Trainer(spec, X, y)
    trainer.train_step()
    tracemalloc.start()
    try:
        for _ in range(2):  # inside an epoch: no hold-out evaluation, no reshuffle
            trainer.train_step()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The smallest array of a step, one shard's output, is 1024 x 32 float32 = 128 KiB. What
    # may come and go: views, Python floats, and numpy's fixed 8192-element iterator buffer
    # for broadcasting ufuncs (32 KiB, whatever the batch size).
    assert peak < 64_000
    assert current < 4_000
