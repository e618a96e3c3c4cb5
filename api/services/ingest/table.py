"""What a reader makes of an upload: its header's facts, then its rows in batches; and the
limits an upload must keep."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from core.data import InvalidDataError
from db.settings import Settings

MiB = 1024 * 1024
BATCH_BYTES = 4 * MiB
"""About what one batch of X weighs, for the readers that choose their batch size."""


@dataclass(frozen=True)
class Batch:
    """Rows ``start .. start + len(X) - 1`` of the upload (0-based, in upload order).

    ``X`` is ``(rows, features)``; ``y`` is ``(rows,)`` or ``(rows, targets)`` of numbers or
    labels, or, when the table says ``y_text``, the target cells as text (a CSV's), whose
    kind is decided over the whole column.
    """

    start: int
    X: np.ndarray
    y: np.ndarray


@dataclass
class Table:
    """An opened upload (readers give it by a context manager, which closes what it opened).
    ``n_rows`` is what a header declares (None: known at the end);
    ``columns`` names the features (None: numbered); ``csv`` names rows by the file's line."""

    batches: Generator[Batch, None, None]
    n_features: int
    x_dtype: np.dtype
    n_rows: int | None = None
    columns: list[str] | None = None
    target: str = "y"
    csv: bool = False
    y_text: bool = False

    def where(self, row: int, column: int | None = None) -> str:
        """Row ``row`` (and feature ``column``) as the user knows it: a CSV's line (the
        header is line 1; a quoted value spanning lines shifts it), else the row from 0."""
        place = f"CSV line {row + 2}" if self.csv else f"row {row}"
        if column is None:
            return place
        return f"{place}, " + (f"column {self.columns[column]!r}" if self.columns
                               else f"X column {column}")

    def target_at(self, row: int) -> str:
        where = self.where(row)
        return f"{where}, column {self.target!r}" if self.columns else f"{where} of y"


@dataclass(frozen=True)
class Limits:
    """Bounds on an upload, checked as soon as it passes one (None: unbounded)."""

    max_rows: int | None = None
    max_features: int | None = None
    max_bytes: int | None = None
    """The upload's bytes, and X's as decoded."""

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_rows, settings.max_features, settings.max_dataset_bytes)


def array_table(X: np.ndarray, y: np.ndarray) -> Table:
    """Arrays in memory as a table (a JSON upload, or data a test stores)."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2:
        raise InvalidDataError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidDataError(f"X is empty, shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise InvalidDataError(f"X must be numeric, got dtype {X.dtype}")
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise InvalidDataError(f"y must have {X.shape[0]} rows like X, got shape {y.shape}")
    rows = max(1, BATCH_BYTES // (X.shape[1] * X.dtype.itemsize))

    def batches() -> Generator[Batch, None, None]:
        for start in range(0, len(X), rows):
            yield Batch(start, X[start:start + rows], y[start:start + rows])

    return Table(batches(), X.shape[1], X.dtype, n_rows=len(X))
