"""Every format streams into the same stored rows: ``X[ingest_order(n)]`` bit for bit, with
the digest and rows of the same arrays stored from memory; X keeps its dtype; a CSV's target
column is labels or targets by all of its cells."""

from __future__ import annotations

import numpy as np
import pytest

from db.blobs import BlobStore
from tests.api.ingest.conftest import Ingester, in_stored_order
from tests.api.ingest.formats import (
    FORMATS,
    as_csv,
    as_npz,
    as_parquet,
    encoded,
    without_pyarrow,
)

N = 70_001  # past one block of ingest buckets (65,536 rows), in many batches of each reader


def data(n: int = N, features: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)) * 10.0 ** rng.integers(-5, 5, size=(n, 1)), \
        rng.integers(0, 4, size=n)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.usefixtures("small_batches")
def test_each_format_stores_the_rows_of_ingest_order_bit_for_bit(
        fmt: str, ingester: Ingester, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = data()
    dataset = ingester(*encoded(fmt, X, y, monkeypatch))
    X_stored, y_stored = ingester.stored(dataset)
    X_expected, y_expected = in_stored_order(X, y)
    assert X_stored.dtype == np.float64 and X_stored.tobytes() == X_expected.tobytes()
    np.testing.assert_array_equal(y_stored, y_expected)
    assert (dataset.n_rows, dataset.n_features, dataset.task, dataset.classes) == (
        N, 3, "classification", [0, 1, 2, 3])
    # The arrays stored from memory (as tests' add_dataset does): the same digest, so the
    # tenant's upload is found; for another tenant, the same rows.
    assert ingester.arrays(X, y).id == dataset.id
    other = ingester.arrays(X, y, tenant="globex")
    assert other.sha256 == dataset.sha256 and other.id != dataset.id
    assert ingester.stored(other)[0].tobytes() == X_stored.tobytes()


@pytest.mark.parametrize("fmt", ["npz", "npz-compressed", "parquet"])
def test_uint8_stays_uint8(fmt: str, ingester: Ingester,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(3000, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=3000)
    dataset = ingester(*encoded(fmt, pixels, labels, monkeypatch))
    X_stored, y_stored = ingester.stored(dataset)
    X_expected, y_expected = in_stored_order(pixels, labels)
    assert X_stored.dtype == np.uint8 and dataset.size_bytes == 3000 * (784 + 4)
    np.testing.assert_array_equal(X_stored, X_expected)
    np.testing.assert_array_equal(y_stored, y_expected)


def test_an_upload_read_from_the_store_as_a_finished_upload_is(
        ingester: Ingester, store: BlobStore) -> None:
    """A resumable upload's path: its blob through ``open_seekable`` (Parquet and .npz
    need their footer and directory, at the end)."""
    X, y = data(n=5000)
    expected = ingester.arrays(X, y, tenant="globex")
    for key, (body, fmt, target) in {
            "uploads/a/data": (as_npz(X, y, compressed=True), "npz", None),
            "uploads/b/data": (as_parquet(X, y, row_group_size=700), "parquet", "label"),
            "uploads/c/data": (as_csv(X, y), "csv", "label")}.items():
        store.put(key, body)
        with store.open_seekable(key, buffer_size=64 * 1024) as source:
            assert ingester(source, fmt, target).sha256 == expected.sha256  # type: ignore[arg-type]


@pytest.mark.parametrize("parser", ["arrow", "text"])
@pytest.mark.usefixtures("small_batches")
def test_a_csv_target_column_is_labels_or_targets_by_all_its_cells(
        parser: str, ingester: Ingester, monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "text":
        without_pyarrow(monkeypatch)
    X = np.random.default_rng(2).normal(size=(20_000, 2)).round(3)
    cells = (np.arange(20_000) % 3).astype("<U8")
    assert ingester(as_csv(X, cells), "csv", "label").classes == [0, 1, 2]

    # A float in the last row (many blocks later) makes every row a target.
    cells[-1] = "0.5"
    targets = ingester(as_csv(X, cells), "csv", "label")
    assert (targets.task, targets.target_min, targets.target_max) == ("regression", 0.0, 2.0)
    np.testing.assert_array_equal(ingester.stored(targets)[1],
                                  in_stored_order(X, cells.astype(float))[1])
    assert ingester.arrays(X, cells.astype(float), tenant="globex").sha256 == targets.sha256

    # A word in the last row makes every cell a label, as written ("01" is not "1"); a
    # "nan" is then a label too.
    cells[-1], cells[5], cells[7] = "cat", "01", "nan"
    labels = ingester(as_csv(X, cells), "csv", "label")
    assert labels.classes == ["0", "01", "1", "2", "cat", "nan"]
    np.testing.assert_array_equal(ingester.stored(labels)[1], in_stored_order(X, cells)[1])
    assert ingester.arrays(X, cells, tenant="globex").sha256 == labels.sha256


def test_targets_labels_and_what_float32_cannot_hold(ingester: Ingester) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4))
    X[1234, 2] = -1e39
    y = rng.normal(size=(3000, 2))
    dataset = ingester(as_npz(X, y), "npz")
    assert (dataset.task, dataset.n_targets) == ("regression", 2)
    assert (dataset.target_min, dataset.target_max) == (y.min(), y.max())
    assert dataset.beyond_float32 == ["X", 1234]
    np.testing.assert_array_equal(ingester.stored(dataset)[1], in_stored_order(X, y)[1])

    words = np.array([b"cat", b"dog", b"eel"])[np.arange(3000) % 3]  # bytes labels: text
    named = ingester(as_npz(X.clip(-9, 9).astype(">f4"), words), "npz")
    assert named.classes == ["cat", "dog", "eel"] and named.beyond_float32 is None
    assert ingester.stored(named)[0].dtype == np.dtype("<f4")
    assert ingester.stored(named)[1].tolist() == in_stored_order(X, words.astype(str))[1].tolist()
