"""Data checks, what describes a dataset without its rows, and the encoding of its targets.

Which rows a job trains on, in which shard and order, is ``core.splits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from core.splits import Split

Task = Literal["classification", "regression"]


class InvalidDataError(ValueError):
    """The data cannot train this spec; the message says what is wrong."""


def check_arrays(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values; returns ``X`` as float64-or-narrower numeric and ``y``."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2:
        raise InvalidDataError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidDataError(f"X is empty, shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise InvalidDataError(f"X must be numeric, got dtype {X.dtype}")
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise InvalidDataError(f"y must have {X.shape[0]} rows like X, got shape {y.shape}")
    # A sum is NaN or infinite when any value is: one streaming pass instead of a full-size
    # boolean array. It can also overflow on finite values, so only then are they looked at.
    with np.errstate(over="ignore"):
        overflowed_or_bad = X.dtype.kind == "f" and not np.isfinite(X.sum())
    if overflowed_or_bad:
        bad_rows = np.argwhere(~np.isfinite(X))
        if len(bad_rows):
            raise InvalidDataError(f"X holds NaN or Inf (first at row {int(bad_rows[0][0])})")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        bad = int(np.argwhere(~np.isfinite(y))[0][0])
        raise InvalidDataError(f"y holds NaN or Inf (first at row {bad})")
    if y.dtype.kind not in "biufUS":
        raise InvalidDataError(f"y must hold numbers or class labels, got dtype {y.dtype}")
    return X, y


def in_dtype(name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` as a contiguous array of ``dtype``, refusing any that it cannot hold (float64
    data past float32's largest value would train on infinities)."""
    with np.errstate(over="ignore"):  # the values that overflow are looked for below
        cast = np.ascontiguousarray(values, dtype=dtype)
    if values.dtype.kind == "f" and values.dtype.itemsize > cast.dtype.itemsize:
        limit = np.finfo(cast.dtype).max
        if values.max() > limit or values.min() < -limit:
            row = int(np.argwhere(np.abs(values) > limit)[0][0])
            raise InvalidDataError(
                f"{name} holds values beyond {cast.dtype}'s range of +-{limit:.4g} (first at "
                f"row {row}): train with dtype float64, or scale the data")
    return cast


FLOAT32_MAX = float(np.finfo(np.float32).max)


def first_beyond_float32(name: str, values: np.ndarray, start: int = 0) -> tuple[str, int] | None:
    """``(name, row)`` of the first row of ``values`` holding a value float32 cannot hold
    (``start``: the row number of the first), or None."""
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4 or not values.size:
        return None
    if values.max() <= FLOAT32_MAX and values.min() >= -FLOAT32_MAX:
        return None
    return name, start + int(np.argwhere(np.abs(values) > FLOAT32_MAX)[0][0])


def infer_task(y: np.ndarray) -> Task:
    """Integer, boolean or string labels are classes; floats are regression targets."""
    return "classification" if y.dtype.kind in "biuUS" else "regression"


@dataclass(frozen=True)
class DataShape:
    """What describes a dataset without its rows: a job plans its network, encodes its
    targets and splits its rows from it. ``classes`` are the sorted class labels, and the
    rows' ``y`` holds indices into them; a regression's ``y`` holds ``n_targets`` columns of
    targets, within ``target_range``. ``beyond_float32`` names the first value that float32
    cannot hold: the array and its row as uploaded (a float32 job refuses the dataset)."""

    n_rows: int
    n_features: int
    task: Task
    classes: np.ndarray | None = None
    n_targets: int = 1
    target_range: tuple[float, float] | None = None
    split: Split = "contiguous"
    beyond_float32: tuple[str, int] | None = None

    def check_dtype(self, dtype: str) -> None:
        """Refuse a dtype that cannot hold the data: cast batch by batch, a float32 job would
        train on infinities."""
        if dtype == "float32" and self.beyond_float32 is not None:
            name, row = self.beyond_float32
            raise InvalidDataError(
                f"{name} holds values beyond float32's range of +-{FLOAT32_MAX:.4g} (first at "
                f"row {row}): train with dtype float64, or scale the data")

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray, split: Split = "contiguous") -> DataShape:
        """The shape of arrays in memory, checked (``check_arrays``); ``y`` as uploaded."""
        X, y = check_arrays(X, y)
        task = infer_task(y)
        beyond = first_beyond_float32("X", X)
        if task == "classification":
            if y.ndim != 1:
                raise InvalidDataError(f"class labels must be 1-D, got shape {y.shape}")
            return cls(X.shape[0], X.shape[1], task, np.unique(y), split=split,
                       beyond_float32=beyond)
        return cls(X.shape[0], X.shape[1], task, None, 1 if y.ndim == 1 else y.shape[1],
                   (float(y.min()), float(y.max())), split,
                   beyond or first_beyond_float32("y", y))


@dataclass(frozen=True)
class TargetEncoding:
    """How labels map to output columns, and back.

    Classification: one-hot over the sorted ``classes``, except that two classes on a sigmoid
    output use a single column (p = P(classes[1])). Regression: the values themselves.
    """

    task: str
    classes: np.ndarray | None
    n_out: int

    @classmethod
    def describe(cls, shape: DataShape, output: str, loss: str) -> TargetEncoding:
        """The encoding of ``shape``'s targets for an output layer and a loss. Raises
        InvalidDataError when they do not fit."""
        if shape.task == "classification":
            assert shape.classes is not None
            if len(shape.classes) < 2:
                raise InvalidDataError(f"y holds a single class ({shape.classes[0].item()!r}):"
                                       " nothing to learn")
            n_out = 1 if (output == "sigmoid" and len(shape.classes) == 2) else len(
                shape.classes)
            return cls(shape.task, shape.classes, n_out)
        if loss == "cross_entropy":
            raise InvalidDataError("cross_entropy needs class labels (integers or strings) in y, "
                                   "got regression targets")
        low, high = shape.target_range or (0.0, 0.0)
        if loss == "binary_cross_entropy" and (low < 0 or high > 1):
            raise InvalidDataError("binary_cross_entropy needs targets in [0, 1]")
        return cls(shape.task, None, shape.n_targets)

    @classmethod
    def fit(cls, y: np.ndarray, output: str, loss: str) -> TargetEncoding:
        """The encoding of labels or targets ``y``."""
        return cls.describe(DataShape.of(np.zeros((len(y), 1)), y), output, loss)

    def label_index(self, y: np.ndarray) -> np.ndarray:
        assert self.classes is not None
        idx = np.searchsorted(self.classes, y)
        idx = np.minimum(idx, len(self.classes) - 1)
        if not np.array_equal(self.classes[idx], y):
            raise InvalidDataError("y holds labels the model was not trained on")
        return idx

    def encode(self, y: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """(n, n_out) targets in the model's dtype, from labels or regression targets."""
        return self.encode_rows(self.label_index(y) if self.classes is not None else y, dtype)

    def encode_rows(self, y: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """(n, n_out) targets in the model's dtype, from ``y`` as stored rows hold it: class
        indices, or regression targets."""
        if self.classes is None:
            return in_dtype("y", np.asarray(y), dtype).reshape(len(y), self.n_out)
        idx = y
        if self.n_out == 1:
            return idx.astype(dtype).reshape(-1, 1)
        onehot = np.zeros((len(y), self.n_out), dtype=dtype)
        onehot[np.arange(len(y)), idx] = 1.0
        return onehot

    def predict_index(self, out: np.ndarray) -> np.ndarray:
        """Class index per row of output activations."""
        if self.n_out == 1:
            return (out[:, 0] > 0.5).astype(np.int64)
        return np.argmax(out, axis=1)

    def decode(self, out: np.ndarray) -> np.ndarray | None:
        """Class labels per row, or None for regression."""
        if self.classes is None:
            return None
        return self.classes[self.predict_index(out)]


def output_width(task: str, classes: list[Any] | None, n_targets: int, output: str,
                 loss: str) -> int:
    """Units of the output layer, as ``TargetEncoding.describe`` sets them, from what
    describes a dataset without its rows: its task, its classes and its target columns."""
    if task == "regression":
        return n_targets
    # The class list stands in for y: the encoding depends only on the set of classes.
    return TargetEncoding.fit(np.asarray(classes), output, loss).n_out
