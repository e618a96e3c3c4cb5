"""Reading a CSV in batches with the standard library's ``csv``, where pyarrow is not
installed: the same rows, checks and errors as ``csv_arrow``, several times slower."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import IO

import numpy as np

from api.services.ingest.csv_header import (
    bad_cell,
    buffered,
    columns,
    no_rows,
    ragged,
    read_header,
)
from api.services.ingest.table import Batch, Table
from core.data import InvalidDataError

BATCH_CELLS = 1 << 17
"""Cells parsed into one batch: about a megabyte of text."""
_SURROGATES = (0xDC80, 0xDCFF)  # the bytes that are not UTF-8, as surrogateescape keeps them


def _number(cell: str) -> bool:
    """Whether pyarrow reads the cell as a float: Python's float() also takes "1_000" and
    digits of other scripts, which it does not."""
    if not cell.isascii() or "_" in cell:
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _batch(start: int, rows: list[list[str]], names: list[str], features: list[int],
           label: int) -> Batch:
    cells = np.array(rows, dtype=str)
    y = np.ascontiguousarray(cells[:, label])
    codes = y.view(np.uint32)
    if ((codes >= _SURROGATES[0]) & (codes <= _SURROGATES[1])).any():
        row = next(i for i, cell in enumerate(y.tolist()) if not _utf8(cell))
        raise bad_cell(start + row + 2, names[label], None, feature=False)
    text = np.ascontiguousarray(cells[:, features])
    try:
        codes = text.view(np.uint32)
        if codes.max(initial=0) > 127 or (codes == ord("_")).any():
            raise ValueError("a cell float() takes and pyarrow does not")
        X = text.astype(np.float64)
    except ValueError:
        # Column by column, as pyarrow converts: the same cell is named.
        for j, column in enumerate(features):
            for row, cell in enumerate(text[:, j].tolist()):
                if not _number(cell):
                    raise bad_cell(start + row + 2, names[column], cell, feature=True) from None
        raise
    return Batch(start, X, y)


def _utf8(cell: str) -> bool:
    try:
        cell.encode()
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def text_csv(source: IO[bytes], target: str | None) -> Iterator[Table]:
    """A CSV with a header, ``target`` naming the column of labels or targets."""
    stream = buffered(source)
    names = read_header(stream)
    features, label = columns(names, target)
    # surrogateescape: a byte that is not UTF-8 reaches the cell that holds it, named there.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    per_batch = max(1, BATCH_CELLS // len(names))

    def batches() -> Generator[Batch, None, None]:
        reader = csv.reader(text)
        start = 0
        try:
            next(reader, None)  # the header
            # Whole batches through C loops: a row at a time in Python is several times slower.
            while rows := list(islice(reader, per_batch)):
                if not all(rows):
                    rows = [row for row in rows if row]  # blank lines: pyarrow skips them too
                if set(map(len, rows)) - {len(names)}:
                    row = next(i for i, cells in enumerate(rows) if len(cells) != len(names))
                    raise ragged(start + row + 2, len(rows[row]), len(names))
                if rows:
                    yield _batch(start, rows, names, features, label)
                    start += len(rows)
        except csv.Error as error:
            raise InvalidDataError(f"CSV line {reader.line_num} of the file: {error}") from None
        if start == 0:
            raise no_rows()

    try:
        yield Table(batches(), len(features), np.dtype(np.float64),
                    columns=[names[i] for i in features], target=names[label], csv=True,
                    y_text=True)
    finally:
        text.detach()  # the caller's source stays open: it is the caller's to close
        stream.detach()
