"""Data checks, target encoding, the seeded hold-out, shards and the per-step batch plan.

Everything here is a pure function of the job spec and the data (SPEC section 4): which rows are
held out, which shard owns which row, and which rows each shard draws at every step. Any worker
can recompute it, so no worker's placement can change the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.network import STREAM_HOLDOUT, STREAM_SHARD_ORDER


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


def infer_task(y: np.ndarray) -> Literal["classification", "regression"]:
    """Integer, boolean or string labels are classes; floats are regression targets."""
    return "classification" if y.dtype.kind in "biuUS" else "regression"


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
    def fit(cls, y: np.ndarray, output: str, loss: str) -> TargetEncoding:
        task = infer_task(y)
        if task == "classification":
            if y.ndim != 1:
                raise InvalidDataError(f"class labels must be 1-D, got shape {y.shape}")
            classes = np.unique(y)
            if len(classes) < 2:
                raise InvalidDataError(
                    f"y holds a single class ({classes[0].item()!r}): nothing to learn")
            n_out = 1 if (output == "sigmoid" and len(classes) == 2) else len(classes)
            return cls(task, classes, n_out)
        if loss == "cross_entropy":
            raise InvalidDataError("cross_entropy needs class labels (integers or strings) in y, "
                                   f"got {y.dtype} values")
        if loss == "binary_cross_entropy" and (np.min(y) < 0 or np.max(y) > 1):
            raise InvalidDataError("binary_cross_entropy needs targets in [0, 1]")
        return cls(task, None, 1 if y.ndim == 1 else y.shape[1])

    def label_index(self, y: np.ndarray) -> np.ndarray:
        assert self.classes is not None
        idx = np.searchsorted(self.classes, y)
        idx = np.minimum(idx, len(self.classes) - 1)
        if not np.array_equal(self.classes[idx], y):
            raise InvalidDataError("y holds labels the model was not trained on")
        return idx

    def encode(self, y: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """(n, n_out) targets in the model's dtype."""
        if self.classes is None:
            return in_dtype("y", np.asarray(y), dtype).reshape(len(y), self.n_out)
        idx = self.label_index(y)
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
    """Units of the output layer, as ``TargetEncoding.fit`` sets them, from what describes a
    dataset without its rows: its task, its classes and its number of target columns."""
    if task == "regression":
        return n_targets
    # The class list stands in for y: the encoding depends only on the set of classes.
    return TargetEncoding.fit(np.asarray(classes), output, loss).n_out


def n_validation(n: int, fraction: float) -> int:
    """Rows held out for validation: the fraction rounded, at least one when asked for any."""
    n_val = round(fraction * n)
    return 1 if fraction > 0 and n_val == 0 and n > 1 else n_val


def steps_per_epoch(n: int, fraction: float, batch_size: int) -> int:
    """Steps of an epoch on ``n`` rows, known before the data is loaded (to plan a job)."""
    return -(-(n - n_validation(n, fraction)) // batch_size)


def holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train row indices in seeded random order, validation row indices sorted)."""
    n_val = n_validation(n, fraction)
    order = np.random.default_rng([seed, STREAM_HOLDOUT]).permutation(n)
    return order[n_val:], np.sort(order[:n_val])


def shard_bounds(n: int, shards: int) -> np.ndarray:
    """S+1 boundaries splitting n rows into near-equal shards, the larger ones first."""
    if n < shards:
        raise InvalidDataError(f"{n} training rows cannot fill {shards} shards")
    q, r = divmod(n, shards)
    sizes = np.full(shards, q, dtype=np.int64)
    sizes[:r] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def shard_order(seed: int, epoch: int, shard: int, n: int) -> np.ndarray:
    """The order in which a shard visits its rows in an epoch: seeded by (seed, epoch, shard)
    alone, so it is the same on whichever worker computes the shard."""
    return np.random.default_rng([seed, STREAM_SHARD_ORDER, epoch, shard]).permutation(n)


@dataclass(frozen=True)
class StepPlan:
    """How many rows each shard draws at each step of an epoch.

    An epoch has ``ceil(N / B)`` steps of the global batch ``B`` (the last one shorter). At each
    step the batch is split over the shards with shares differing by at most one row; the rows
    left over by the division go to the shards in turn, continuing where the previous step
    stopped, so that over an epoch every shard draws exactly its own row count.
    """

    shares: np.ndarray  # (steps_per_epoch, shards) rows drawn
    starts: np.ndarray  # (steps_per_epoch, shards) position in the shard's epoch order

    @classmethod
    def build(cls, n_train: int, batch_size: int, shards: int) -> StepPlan:
        steps = -(-n_train // batch_size)
        batch = np.full(steps, batch_size, dtype=np.int64)
        batch[-1] = n_train - (steps - 1) * batch_size
        extra = batch % shards
        offset = (np.concatenate(([0], np.cumsum(extra)[:-1])) % shards)[:, None]
        position = (np.arange(shards)[None, :] - offset) % shards
        shares = batch[:, None] // shards + (position < extra[:, None])
        starts = np.cumsum(shares, axis=0) - shares
        return cls(shares=shares, starts=starts)

    @property
    def steps_per_epoch(self) -> int:
        return int(self.shares.shape[0])
