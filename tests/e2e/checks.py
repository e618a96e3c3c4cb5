"""The job specs of the end-to-end tests and what they check of a finished job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Weights = dict[str, np.ndarray]
# The ``reference`` fixture: a spec's final weights from ``shardtrain train``.
Reference = Callable[[dict[str, Any]], Weights]

# The digits job of the issues. A quarter of the 1797 rows is held out, which leaves 43
# batches of 32 rows per epoch.
STEPS_PER_EPOCH = 43
DIGITS_SPEC: dict[str, Any] = {
    "name": "digits-e2e",
    "model": {"hidden": [32], "activation": "relu", "output": "softmax"},
    "loss": "cross_entropy",
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "epochs": 10, "batch_size": 32, "seed": 7, "validation_fraction": 0.25, "shards": 4,
}


def digits_spec(dataset_id: str, **fields: Any) -> dict[str, Any]:
    """``DIGITS_SPEC`` on ``dataset_id``, with ``fields`` replacing its top-level fields."""
    return {**DIGITS_SPEC, "dataset": dataset_id, **fields}


def reference_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as given to ``shardtrain train``: without ``dataset`` and ``max_workers``,
    which it would ignore anyway, so that the specs of one job differing in those alone
    share a reference run."""
    return {key: value for key, value in spec.items() if key not in ("dataset", "max_workers")}


def layers(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Only the ``W1, b1, W2, b2, ...`` arrays of a weights file."""
    return {name: array for name, array in weights.items()
            if name[0] in "Wb" and name[1:].isdigit()}


def assert_same_weights(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Bit-identical layers: same names, dtypes, shapes and values."""
    got, expected = layers(got), layers(expected)
    assert sorted(got) == sorted(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype, name
        assert np.array_equal(got[name], array), (
            f"{name} differs: max |diff| {np.max(np.abs(got[name] - array))}")


def forward(weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Plain numpy: ``a = relu(a @ W + b)`` through the hidden layers, softmax at the end."""
    count = len(layers(weights)) // 2
    a = X
    for layer in range(1, count + 1):
        z = a @ weights[f"W{layer}"] + weights[f"b{layer}"]
        if layer < count:
            a = np.maximum(z, 0)
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
    return np.asarray(a)


def assert_every_step_once(metrics: dict[str, list[Any]], total_steps: int) -> None:
    """One entry per step 1..total_steps, in order, with a finite training loss each."""
    assert metrics["step"] == list(range(1, total_steps + 1))
    lengths = {name: len(values) for name, values in metrics.items()}
    assert set(lengths.values()) == {total_steps}, lengths
    assert all(loss is not None and np.isfinite(loss) for loss in metrics["train_loss"])


def assert_succeeded(job: dict[str, Any]) -> None:
    assert job["status"] == "succeeded", job
    progress = job["progress"]
    assert progress["step"] == progress["total_steps"] > 0, progress
