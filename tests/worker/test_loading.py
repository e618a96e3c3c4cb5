"""What a worker reads before training: datasets decoded and checked once per process, in the
order jobs split them, and their targets encoded for each job."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from core.data import InvalidDataError
from core.job import JobData
from core.npz import to_npz
from core.spec import ModelSpec, TrainSpec
from core.splits import ingest_order
from db.models import Dataset
from worker.loading import dataset_rows


def _dataset(X: np.ndarray, y: np.ndarray) -> Dataset:
    return Dataset(sha256=uuid.uuid4().hex, content=to_npz({"X": X, "y": y}))


def test_a_dataset_is_decoded_and_checked_once_then_shared_read_only() -> None:
    X, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 1] * 3)
    dataset = _dataset(X, y)
    first = dataset_rows(dataset)
    order = ingest_order(6)
    assert np.array_equal(first.X, X[order]) and np.array_equal(first.y, y[order])
    assert not first.X.flags.writeable and not first.y.flags.writeable
    dataset.content = b"not read again"
    assert dataset_rows(dataset) is first


def test_data_that_cannot_train_is_refused_at_decoding_and_not_kept() -> None:
    X = np.ones((4, 3), dtype=np.float32)
    X[2, 1] = np.nan
    dataset = _dataset(X, np.zeros(4))
    for _ in range(2):  # refused each time: nothing was cached
        with pytest.raises(InvalidDataError, match=r"NaN or Inf \(first at row 2\)"):
            dataset_rows(dataset)


def test_targets_are_encoded_for_each_job_output_and_loss() -> None:
    X, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([3, 5] * 3)
    rows = dataset_rows(_dataset(X, y))
    softmax = TrainSpec(validation_fraction=0.0)
    sigmoid = TrainSpec(model=ModelSpec(output="sigmoid"), loss="binary_cross_entropy",
                        validation_fraction=0.0)
    job = JobData.build(softmax, rows.shape, rows)
    assert job.encoding.classes is not None and job.encoding.classes.tolist() == [3, 5]
    stored = y[ingest_order(6)]
    Y = job.shard_block(0)[0].Y
    assert np.array_equal(Y, np.eye(2, dtype=np.float32)[(stored == 5).astype(int)])
    Y = JobData.build(sigmoid, rows.shape, rows).shard_block(0)[0].Y  # one column: P(class 5)
    assert Y.shape == (6, 1) and Y.ravel().tolist() == (stored == 5).astype(float).tolist()
    regression = dataset_rows(_dataset(X, y * 0.5))
    with pytest.raises(InvalidDataError, match="cross_entropy needs class labels"):
        JobData.build(softmax, regression.shape, regression)
