"""X batch by batch: its canonical form, its checks and limits, and the digest of its bytes."""

from __future__ import annotations

import hashlib

import numpy as np

from api.services.errors import InvalidInput
from api.services.ingest.table import Limits, Table
from core.data import FLOAT32_MAX, InvalidDataError


def canonical_dtype(dtype: np.dtype) -> np.dtype:
    """Little-endian in X's own dtype, booleans as bytes: equal data gives equal bytes."""
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    return dtype.newbyteorder("<")


def over_limit(message: str) -> InvalidInput:
    return InvalidInput(("body",), message, kind="limit_exceeded")


class Features:
    """Takes X's batches in upload order; refuses what cannot train, at the first row that
    shows it, and a limit as soon as it is passed."""

    def __init__(self, table: Table, limits: Limits) -> None:
        self.table, self.limits = table, limits
        self.dtype = canonical_dtype(table.x_dtype)
        self.width = table.n_features
        self.row_bytes = self.width * self.dtype.itemsize
        self.rows = 0
        self.hash = hashlib.sha256()
        self.beyond_float32: tuple[str, int] | None = None
        if limits.max_features is not None and self.width > limits.max_features:
            raise over_limit(f"X has {self.width} features, more than the limit "
                             f"max_features={limits.max_features}")
        if table.n_rows is not None:  # declared by a header: refused before it is read
            self._check_rows(table.n_rows, declared=True)

    def _check_rows(self, rows: int, *, declared: bool = False) -> None:
        """``rows`` rows, declared by a header or read so far, keep the limits."""
        limits, where = self.limits, self.table.where
        if limits.max_rows is not None and rows > limits.max_rows:
            raise over_limit(
                f"X has {rows} rows, more than the limit max_rows={limits.max_rows}"
                if declared else f"{where(limits.max_rows)} is past the limit "
                f"max_rows={limits.max_rows}")
        if limits.max_bytes is not None and rows * self.row_bytes > limits.max_bytes:
            raise over_limit(
                f"X's {rows} rows take {rows * self.row_bytes} bytes, more than the limit "
                f"max_dataset_bytes={limits.max_bytes}" if declared
                else f"{where(limits.max_bytes // self.row_bytes)} takes X past the limit "
                f"max_dataset_bytes={limits.max_bytes}")

    def take(self, X: np.ndarray, start: int) -> np.ndarray:
        """The batch of rows ``start ..`` in canonical form, checked and digested."""
        if X.ndim != 2 or X.shape[1] != self.width:
            raise InvalidDataError(f"{self.table.where(start)}: {X.shape[-1]} features where "
                                   f"the first rows have {self.width}")
        if start != self.rows:
            raise AssertionError(f"batch at row {start}, expected {self.rows}")
        self._check_rows(start + len(X))
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if X.dtype.kind == "f":
            self._check_finite(X, start)
            if self.beyond_float32 is None and X.dtype.itemsize > 4 and len(X):
                high = np.abs(X).max(axis=1)
                if high.max() > FLOAT32_MAX:
                    self.beyond_float32 = ("X", start + int(np.argmax(high > FLOAT32_MAX)))
        self.hash.update(X.data)
        self.rows += len(X)
        return X

    def _check_finite(self, X: np.ndarray, start: int) -> None:
        # A sum is NaN or infinite when any value is: one pass, no boolean array of the batch.
        # It can overflow on finite values too, so only then are the values looked at.
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(X.sum()):
                return
        bad = np.argwhere(~np.isfinite(X))
        if len(bad):
            row, column = (int(i) for i in bad[0])
            raise InvalidDataError(f"{self.table.where(start + row, column)} is "
                                   f"{X[row, column]}: NaN or Inf cannot train")
