"""y batch by batch: class labels or regression targets, the classes, the digest of y's
canonical bytes, and what each row keeps until the classes are known.

Typed y (an array's) is what its dtype says: integers or booleans are class labels (int64),
floats regression targets (float64), text class labels. A CSV's target cells are text, and
their kind is decided over the whole column as one array's would be: all integers make
classes, all numbers targets, anything else text labels; a float at row 2,000,000 makes the
column targets. So every kind stays possible until the end: each row keeps its value as a
float and a code into the distinct labels seen, and a digest runs for each kind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from api.services.ingest.table import Table
from core.data import FLOAT32_MAX, InvalidDataError, Task

Kind = Literal["int", "float", "str"]
MAX_CLASSES = 65_536
"""Distinct class labels a dataset may hold: the classes are kept in memory while it streams
(and a classifier with more outputs would not fit the job limits anyway)."""


@dataclass(frozen=True)
class Targets:
    """What y turned out to be. ``width`` 0: one value a row, k: k target columns;
    ``lookup`` maps a row's code to its class index; ``digest`` is y's part of the dataset's
    digest, ``"y:<dtype>:<shape>;<sha256 of its canonical bytes>"``."""

    task: Task
    width: int
    classes: list[Any] | None
    lookup: np.ndarray | None
    digest: str
    target_range: tuple[float, float] | None = None
    beyond_float32: tuple[str, int] | None = None

    @property
    def n_targets(self) -> int:
        return max(1, self.width)

    @property
    def stored_dtype(self) -> np.dtype:
        return np.dtype(np.int32 if self.lookup is not None else np.float64)

    def stored(self, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """y as stored rows hold it: class indices, or targets."""
        if self.lookup is not None:
            return self.lookup[codes]
        return values[:, 0] if self.width == 0 else values


def _kind(dtype: np.dtype) -> Kind:
    if dtype.kind in "biu":
        return "int"
    if dtype.kind == "f":
        return "float"
    if dtype.kind in "US":
        return "str"
    raise InvalidDataError(f"y must hold numbers or class labels, got dtype {dtype}")


class Labels:
    """Takes y's batches in upload order (``take``), then says what y is (``finish``)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.kind: Kind | None = None
        self.width = 0
        self.rows = 0
        self.codes: dict[Any, int] | None = {}  # None once past MAX_CLASSES
        self.hashes = {kind: hashlib.sha256() for kind in ("int", "float", "str")}
        self.text_width = 1
        self.low, self.high = np.inf, -np.inf
        self.nonfinite: tuple[int, float] | None = None
        self.beyond: int | None = None

    def take(self, y: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch's ``(values, codes)``: float64 ``(rows, max(1, width))`` and int32
        ``(rows,)``, what the rows keep until ``finish``."""
        taken = self._cells(y, start) if self.table.y_text else self._typed(y, start)
        self.rows += len(y)
        return taken

    def _typed(self, y: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        kind, width = _kind(y.dtype), (0 if y.ndim == 1 else y.shape[1])
        if kind != "float" and width:
            if width != 1:
                raise InvalidDataError(f"class labels must be one per row, got y with {width} "
                                       "columns; floats would be regression targets")
            y, width = y[:, 0], 0  # a column of labels
        if self.kind is None:
            self.kind, self.width = kind, width
        elif (kind, width) != (self.kind, self.width):
            raise InvalidDataError(f"{self.table.where(start)}: y changes from {self.kind} "
                                   f"to {kind}")
        if kind == "float":
            values = np.ascontiguousarray(y, dtype="<f8").reshape(len(y), -1)
            self.hashes["float"].update(values.data)
            self._numbers(values, start, final=True)
            return values, np.full(len(y), -1, dtype=np.int32)
        if kind == "int":
            ints = np.ascontiguousarray(y, dtype="<i8")
            self.hashes["int"].update(ints.data)
            return np.zeros((len(y), 1)), self._code(*_distinct(ints), start)
        labels = _text(y)
        self._hash_text(labels)
        return np.zeros((len(y), 1)), self._code(*_distinct(labels), start)

    def _cells(self, cells: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        cells = np.char.strip(np.asarray(cells, dtype=str))
        empty = np.flatnonzero(cells == "")
        if len(empty):
            raise InvalidDataError(f"{self.table.target_at(start + int(empty[0]))} is empty: "
                                   "every row needs its label or target")
        self._hash_text(cells)
        # Parsed once per distinct cell while the labels are counted (a class column has few).
        distinct, inverse = (_distinct(cells) if self.codes is not None
                             else (cells, np.arange(len(cells))))
        values = np.zeros((len(cells), 1))
        if self.kind in (None, "int"):
            try:
                self.hashes["int"].update(distinct.astype("<i8")[inverse].data)
                self.kind = "int"
            except (ValueError, OverflowError):
                self.kind = "float"
        if self.kind != "str":
            try:
                values[:, 0] = distinct.astype(np.float64)[inverse]
            except (ValueError, OverflowError):
                self.kind = "str"
            else:
                self.hashes["float"].update(values.data)
                self._numbers(values, start, final=False)
        if self.kind == "str" and self.codes is None:
            raise self._too_many(start + len(cells) - 1)
        return values, self._code(distinct, inverse, start)

    def _numbers(self, values: np.ndarray, start: int, *, final: bool) -> None:
        """Range and float32 reach of targets; NaN or Inf refused (``final``: at once, else
        at the end if the column stays numbers)."""
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(values.sum())
        if not finite:
            bad = np.argwhere(~np.isfinite(values))
            if len(bad):
                row, value = start + int(bad[0][0]), float(values[tuple(bad[0])])
                if final:
                    raise self._nonfinite(row, value)
                self.nonfinite = self.nonfinite or (row, value)
                return
        if len(values):
            self.low, self.high = min(self.low, values.min()), max(self.high, values.max())
            if self.beyond is None and max(-self.low, self.high) > FLOAT32_MAX:
                self.beyond = start + int(np.argmax(np.abs(values).max(axis=1) > FLOAT32_MAX))

    def _nonfinite(self, row: int, value: float) -> InvalidDataError:
        return InvalidDataError(f"{self.table.target_at(row)} is {value}: NaN or Inf cannot "
                                "train")

    def _too_many(self, row: int) -> InvalidDataError:
        hint = "; integer targets written as floats (1.0) would make a regression" \
            if self.kind == "int" else ""
        return InvalidDataError(f"y holds more than {MAX_CLASSES} distinct class labels "
                                f"(by {self.table.where(row)}): too many classes{hint}")

    def _code(self, distinct: np.ndarray, inverse: np.ndarray, start: int) -> np.ndarray:
        """Each row's code (the order in which its label was first seen), from the batch's
        distinct labels and the index of each row's."""
        if self.codes is None:
            return np.full(len(inverse), -1, dtype=np.int32)
        lookup = np.empty(len(distinct), dtype=np.int32)
        for i, label in enumerate(distinct.tolist()):
            code = self.codes.get(label)
            if code is None:
                if len(self.codes) == MAX_CLASSES:
                    self.codes = None
                    if self.table.y_text and self.kind != "str":
                        return np.full(len(inverse), -1, dtype=np.int32)  # may end numbers
                    raise self._too_many(start + len(inverse) - 1)
                code = self.codes[label] = len(self.codes)
            lookup[i] = code
        return lookup[inverse]

    def _hash_text(self, labels: np.ndarray) -> None:
        """Text labels' canonical bytes: each label in UTF-8, then a 0 byte."""
        if len(labels):
            self.text_width = max(self.text_width, int(np.char.str_len(labels).max()))
            self.hashes["str"].update(("\0".join(labels.tolist()) + "\0").encode(
                "utf-8", errors="surrogatepass"))

    def finish(self) -> Targets:
        """What y is, once every row was taken; refuses NaN or Inf targets, too many
        classes and a single one."""
        shape = str(self.rows) if self.width == 0 else f"{self.rows}x{self.width}"
        if self.kind == "float":
            if self.nonfinite is not None:
                raise self._nonfinite(*self.nonfinite)
            return Targets("regression", self.width, None, None,
                           f"y:<f8:{shape};{self.hashes['float'].hexdigest()}",
                           (float(self.low), float(self.high)),
                           None if self.beyond is None else ("y", self.beyond))
        if self.codes is None:
            raise self._too_many(self.rows - 1)
        assert self.kind is not None, "finish before any row"
        labels: list[Any] = list(self.codes)  # in code order
        values = np.array(labels, dtype=str if self.kind == "str" else None)
        if self.kind == "int" and self.table.y_text:
            values = values.astype(np.int64)  # as the cells were parsed
        classes = np.unique(values)
        if len(classes) < 2:
            raise InvalidDataError(f"y holds a single class ({classes[0].item()!r}): "
                                   "nothing to learn")
        dtype = "<i8" if self.kind == "int" else f"<U{self.text_width}"
        return Targets("classification", 0, classes.tolist(),
                       np.searchsorted(classes, values).astype(np.int32),
                       f"y:{dtype}:{shape};{self.hashes[self.kind].hexdigest()}")


def _distinct(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distinct, inverse = np.unique(labels, return_inverse=True)
    return distinct, inverse.reshape(-1)


def _text(labels: np.ndarray) -> np.ndarray:
    """Text labels as unicode (bytes decoded)."""
    try:
        return labels.astype(str)
    except UnicodeDecodeError as error:
        raise InvalidDataError(f"y holds bytes that are not text: {error}") from error
