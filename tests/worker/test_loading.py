"""What a worker reads before training: datasets decoded and checked once per process."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from core.data import InvalidDataError
from core.npz import to_npz
from db.models import Dataset
from worker.loading import dataset_arrays


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
