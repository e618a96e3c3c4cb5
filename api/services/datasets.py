"""Turning an upload into a stored dataset: validation, limits, canonical form, dedupe, and
its rows written to the blob store in the order jobs split them (``db.blobs.datasets``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api.services.dataset_files import UploadFormat, read_arrays
from api.services.errors import InvalidInput
from core.data import DataShape, InvalidDataError, check_arrays, infer_task
from core.splits import ingest_order
from db.base import new_id
from db.blobs import BlobStore
from db.blobs.datasets import RowsWriter, dataset_prefix
from db.models import Dataset, Task
from db.queries.datasets import DatasetFacts, dataset_with_content, store_dataset
from db.settings import Settings

# A compressed .npz may decompress to this many times the body limit: room for ordinary
# float data, which compresses far less, while a zip bomb is refused before it expands.
NPZ_EXPANSION = 4
# Rows written at a time: the permuted copy in memory stays small.
WRITE_ROWS = 1 << 14


@dataclass(frozen=True)
class CanonicalData:
    """The arrays as uploaded, in a canonical form: ``X`` little-endian in its own dtype
    (uint8 stays uint8), ``y`` int64 class labels, unicode class labels or float64 targets."""

    X: np.ndarray
    y: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray) -> CanonicalData:
        X, y = check_arrays(X, y)
        # Little-endian, booleans as bytes: equal data gives equal bytes.
        x_dtype = np.dtype(np.uint8) if X.dtype.kind == "b" else X.dtype.newbyteorder("<")
        X = np.ascontiguousarray(X, dtype=x_dtype)
        if y.dtype.kind in "biu":
            y = y.astype(np.int64)
        elif y.dtype.kind == "f":
            y = y.astype(np.float64)
        else:
            y = _unicode(y)
        if infer_task(y) == "classification":
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()  # a column of labels
            if y.ndim != 1:
                raise InvalidDataError(f"class labels must be one per row, got y of shape "
                                       f"{y.shape}; floats would be regression targets")
            if len(np.unique(y)) < 2:
                raise InvalidDataError(
                    f"y holds a single class ({y[0].item()!r}): nothing to learn")
        return cls(X, np.ascontiguousarray(y))

    @property
    def task(self) -> Task:
        return "classification" if infer_task(self.y) == "classification" else "regression"

    @property
    def n_targets(self) -> int:
        return 1 if self.y.ndim == 1 else self.y.shape[1]

    def classes(self) -> list[Any] | None:
        return np.unique(self.y).tolist() if self.task == "classification" else None

    def sha256(self) -> str:
        """A digest of dtype, shape and values, X then y: unlike the .npz bytes (whose zip
        headers carry timestamps), it is the same for the same data in any upload format."""
        digest = hashlib.sha256()
        for name, array in (("X", self.X), ("y", self.y)):
            digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
            digest.update(array.data)
        return digest.hexdigest()


def _unicode(labels: np.ndarray) -> np.ndarray:
    try:
        labels = labels.astype(str)
    except UnicodeDecodeError as error:
        raise InvalidDataError(f"y holds bytes that are not text: {error}") from error
    # The narrowest width that holds every label, as uploads may pad it differently.
    width = max(1, int(np.char.str_len(labels).max(initial=0)))
    return labels.astype(f"<U{width}")


def check_size(data: CanonicalData, *, settings: Settings) -> None:
    n_rows, n_features = data.X.shape
    if n_rows > settings.max_rows:
        raise InvalidInput(("body", "X"), f"X has {n_rows} rows, more than the limit "
                           f"max_rows={settings.max_rows}", kind="limit_exceeded")
    if n_features > settings.max_features:
        raise InvalidInput(("body", "X"), f"X has {n_features} features, more than the limit "
                           f"max_features={settings.max_features}", kind="limit_exceeded")


def create_dataset(*, session: Session, store: BlobStore, tenant_id: str, name: str,
                   content: bytes, fmt: UploadFormat, target: str | None,
                   settings: Settings) -> tuple[Dataset, bool]:
    """The tenant's dataset holding this upload's data, and whether it is new.

    Raises ``InvalidDataError`` for content that is no valid training data and
    ``InvalidInput`` for limits and misused parameters.
    """
    X, y = read_arrays(content=content, fmt=fmt, target=target,
                       max_expanded_bytes=NPZ_EXPANSION * settings.max_body_bytes)
    data = CanonicalData.of(X, y)
    check_size(data, settings=settings)
    return store_data(session=session, store=store, tenant_id=tenant_id, name=name, data=data)


def store_data(*, session: Session, store: BlobStore, tenant_id: str, name: str,
               data: CanonicalData) -> tuple[Dataset, bool]:
    """The tenant's dataset of ``data``, written to the store in ``ingest_order`` unless the
    tenant has it already, and whether it is new."""
    sha256 = data.sha256()
    existing = dataset_with_content(session, tenant_id=tenant_id, sha256=sha256)
    if existing is not None:
        return existing, False
    shape = DataShape.of(data.X, data.y)
    order = ingest_order(len(data.X))
    y = data.y if shape.classes is None else np.searchsorted(shape.classes, data.y)
    dataset_id = new_id()
    with RowsWriter(store, dataset_id, x_dtype=data.X.dtype, x_width=data.X.shape[1],
                    y_dtype=np.dtype(np.int32 if shape.classes is not None else np.float64),
                    y_width=0 if y.ndim == 1 else y.shape[1]) as writer:
        for start in range(0, len(order), WRITE_ROWS):
            rows = order[start:start + WRITE_ROWS]
            writer.append(data.X[rows], y[rows])
        manifest = writer.commit()
    low, high = shape.target_range or (None, None)
    facts = DatasetFacts(
        sha256=sha256, size_bytes=manifest.nbytes,
        n_rows=shape.n_rows, n_features=shape.n_features, task=shape.task,
        classes=data.classes(), n_targets=shape.n_targets, target_min=low, target_max=high,
        beyond_float32=list(shape.beyond_float32) if shape.beyond_float32 else None)
    dataset, created = store_dataset(session, dataset_id=dataset_id, tenant_id=tenant_id,
                                     name=name, facts=facts)
    if not created:  # a concurrent upload of the same content stored it first
        store.delete_prefix(dataset_prefix(dataset_id) + "/")
    return dataset, created
