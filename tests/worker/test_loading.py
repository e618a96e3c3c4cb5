"""What a worker reads before and while training: a dataset's rows by range from the blob
store, kept between jobs within a bound; and datasets of the older npz layout, whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.services.datasets import store_data
from core.data import InvalidDataError
from core.job import JobData
from core.npz import to_npz
from core.spec import ModelSpec, TrainSpec
from core.splits import ingest_order
from db.blobs import BlobStore
from db.blobs.datasets import npz_key
from db.blobs.local import LocalBlobStore
from db.engine import SessionFactory, session_scope
from db.models import Dataset
from db.queries.tenants import create_tenant
from db.settings import Settings
from worker.loading import dataset_rows, npz_rows
from worker.row_cache import RowCache


class CountingStore(LocalBlobStore):
    """A directory store that counts the bytes read by range, per key."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: dict[str, int] = {}

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = super().get_range(key, start, length)
        self.read[key] = self.read.get(key, 0) + len(data)
        return data


def _stored(factory: SessionFactory, store: BlobStore, X: np.ndarray, y: np.ndarray
            ) -> Dataset:
    with session_scope(factory) as session:
        dataset, _ = store_data(session=session, store=store,
                                tenant_id=create_tenant(session, name="acme").id,
                                name="data.npz", X=X, y=y)
    return dataset


def test_a_job_reads_only_the_rows_of_its_shards_and_the_cache_keeps_them(
        factory: SessionFactory, settings: Settings, tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "counted")
    X = np.arange(4000 * 8, dtype=np.uint8).reshape(4000, 8)  # 8 bytes a row
    y = np.arange(4000) % 3
    dataset = _stored(factory, store, X, y)
    spec = TrainSpec(shards=4, batch_size=40, validation_fraction=0.25)

    def job() -> JobData:
        return JobData.build(spec, *dataset_rows(store, dataset, settings))

    first = job()
    first.hold([2])  # a rank given shard 2 (training rows 1500..2249)
    stored = ingest_order(4000)
    block, rows = first.shard_block(2)
    np.testing.assert_array_equal(block.X[rows], X[stored[1500:2250]])
    assert block.X.dtype == np.uint8  # as stored; each batch is cast
    # Its rows and at most a chunk more at each end (chunk_rows is 4 MiB of rows here: the
    # whole of this small dataset is one chunk).
    assert store.read[f"datasets/{dataset.id}/X.bin"] <= 4000 * 8

    second = job()  # the next job on the same data, split the same way: nothing is read
    store.read.clear()
    second.hold([2])
    assert store.read == {}
    second.validation_block()  # the hold-out is another range: read
    assert set(store.read) == {f"datasets/{dataset.id}/X.bin", f"datasets/{dataset.id}/y.bin"}


def test_the_cache_keeps_no_more_than_its_bound() -> None:
    class Rows:
        def read(self, start: int, stop: int) -> Any:
            return np.zeros((stop - start, 10), np.uint8), np.zeros(stop - start, np.int32)

    cache = RowCache(3000)
    for start in range(0, 1000, 100):
        cache.rows("d", start, start + 100, Rows())  # 1,400 bytes each
        assert cache.nbytes <= 3000
    inside = cache.rows("d", 950, 960, Rows())  # a view of the range kept last
    assert inside[0].base is not None


def test_an_npz_dataset_is_read_whole_once_and_split_by_each_jobs_seed(
        tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    X, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 1] * 3)
    dataset = Dataset(id="legacy", layout="npz")
    store.put(npz_key("legacy"), to_npz({"X": X, "y": y}))
    first = npz_rows(store, dataset)
    assert first.shape.split == "seeded"
    assert np.array_equal(first.X, X) and not first.X.flags.writeable
    store.put(npz_key("legacy"), b"not read again")
    assert npz_rows(store, dataset) is first


def test_npz_data_that_cannot_train_is_refused_and_not_kept(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    X = np.ones((4, 3), dtype=np.float32)
    X[2, 1] = np.nan
    store.put(npz_key("bad"), to_npz({"X": X, "y": np.zeros(4)}))
    for _ in range(2):  # refused each time: nothing was cached
        with pytest.raises(InvalidDataError, match=r"NaN or Inf \(first at row 2\)"):
            npz_rows(store, Dataset(id="bad", layout="npz"))


def test_targets_are_encoded_for_each_job_output_and_loss(
        factory: SessionFactory, settings: Settings, store: BlobStore) -> None:
    X, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([3, 5] * 3)
    shape, source = dataset_rows(store, _stored(factory, store, X, y), settings)
    softmax = TrainSpec(validation_fraction=0.0)
    sigmoid = TrainSpec(model=ModelSpec(output="sigmoid"), loss="binary_cross_entropy",
                        validation_fraction=0.0)
    job = JobData.build(softmax, shape, source)
    assert job.encoding.classes is not None and job.encoding.classes.tolist() == [3, 5]
    stored = y[ingest_order(6)]
    Y = job.shard_block(0)[0].Y
    assert np.array_equal(Y, np.eye(2, dtype=np.float32)[(stored == 5).astype(int)])
    Y = JobData.build(sigmoid, shape, source).shard_block(0)[0].Y  # one column: P(class 5)
    assert Y.shape == (6, 1) and Y.ravel().tolist() == (stored == 5).astype(float).tolist()
    shape, source = dataset_rows(store, _stored(factory, store, X, y * 0.5), settings)
    with pytest.raises(InvalidDataError, match="cross_entropy needs class labels"):
        JobData.build(softmax, shape, source)
