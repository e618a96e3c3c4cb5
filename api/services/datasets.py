"""Turning an upload into a stored dataset: validation, limits, canonical form, dedupe."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from api.services.dataset_files import UploadFormat, read_arrays
from api.services.errors import InvalidInput
from core.data import InvalidDataError, check_arrays, infer_task
from core.npz import to_npz
from db.models import Dataset, Task
from db.queries.datasets import store_dataset
from db.settings import Settings

# A compressed .npz may decompress to this many times the body limit: room for ordinary
# float data, which compresses far less, while a zip bomb is refused before it expands.
NPZ_EXPANSION = 4


@dataclass(frozen=True)
class CanonicalData:
    """The arrays as stored: ``X`` float32 or float64 (as given; other numbers become
    float64), ``y`` int64 class labels, unicode class labels or float64 targets."""

    X: np.ndarray
    y: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray) -> CanonicalData:
        X, y = check_arrays(X, y)
        # Native byte order and one dtype per kind, so equal data gives equal bytes.
        x_dtype = X.dtype.name if X.dtype.name in ("float32", "float64") else "float64"
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


def create_dataset(*, session: Session, tenant_id: str, name: str, content: bytes,
                   fmt: UploadFormat, target: str | None,
                   settings: Settings) -> tuple[Dataset, bool]:
    """The tenant's dataset holding this upload's data, and whether it is new.

    Raises ``InvalidDataError`` for content that is no valid training data and
    ``InvalidInput`` for limits and misused parameters.
    """
    X, y = read_arrays(content=content, fmt=fmt, target=target,
                       max_expanded_bytes=NPZ_EXPANSION * settings.max_body_bytes)
    data = CanonicalData.of(X, y)
    check_size(data, settings=settings)
    return store_dataset(
        session, tenant_id=tenant_id, name=name,
        content=to_npz({"X": data.X, "y": data.y}), sha256=data.sha256(),
        n_rows=data.X.shape[0], n_features=data.X.shape[1], n_targets=data.n_targets,
        task=data.task, classes=data.classes(),
    )
