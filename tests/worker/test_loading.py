"""What a worker reads before training: datasets decoded and checked, and their targets
encoded, once per process."""

from __future__ import annotations

import uuid
from dataclasses import replace

import numpy as np
import pytest

from core.data import InvalidDataError
from core.npz import to_npz
from core.spec import ModelSpec, TrainSpec
from db.models import Dataset
from worker.loading import dataset_arrays, dataset_targets


def _dataset(X: np.ndarray, y: np.ndarray) -> Dataset:
    return Dataset(sha256=uuid.uuid4().hex, content=to_npz({"X": X, "y": y}))


def test_a_dataset_is_decoded_and_checked_once_then_shared_read_only() -> None:
    X, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 1] * 3)
    dataset = _dataset(X, y)
    first = dataset_arrays(dataset)
    assert np.array_equal(first[0], X) and np.array_equal(first[1], y)
    assert not first[0].flags.writeable and not first[1].flags.writeable
    dataset.content = b"not read again"
    assert all(a is b for a, b in zip(dataset_arrays(dataset), first, strict=True))


def test_data_that_cannot_train_is_refused_at_decoding_and_not_kept() -> None:
    X = np.ones((4, 3), dtype=np.float32)
    X[2, 1] = np.nan
    dataset = _dataset(X, np.zeros(4))
    for _ in range(2):  # refused each time: nothing was cached
        with pytest.raises(InvalidDataError, match=r"NaN or Inf \(first at row 2\)"):
            dataset_arrays(dataset)


def test_targets_are_encoded_once_per_dataset_output_and_loss() -> None:
    X, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([3, 5] * 3)
    dataset = _dataset(X, y)
    softmax = TrainSpec()
    sigmoid = TrainSpec(model=ModelSpec(output="sigmoid"), loss="binary_cross_entropy")
    first = dataset_targets(dataset, softmax)
    again = dataset_targets(dataset, replace(softmax, seed=9))  # a sweep's next job
    assert again[0] is first[0] and again[1] is first[1]
    encoding, Y = first
    assert encoding.classes is not None and encoding.classes.tolist() == [3, 5]
    assert np.array_equal(Y, np.eye(2, dtype=np.float32)[[0, 1] * 3]) and not Y.flags.writeable
    encoding, Y = dataset_targets(dataset, sigmoid)  # one column: P(class 5)
    assert Y.shape == (6, 1) and Y.ravel().tolist() == [0.0, 1.0] * 3
    with pytest.raises(InvalidDataError, match="cross_entropy needs class labels"):
        dataset_targets(_dataset(X, y * 0.5), softmax)
