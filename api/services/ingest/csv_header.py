"""What the two CSV readers share: the header, read before the rows, and how a bad cell is
told. A CSV's rows are named by line, the header being line 1; the lines are counted as
records, so a blank line or a quoted value spanning lines shifts them from the file's."""

from __future__ import annotations

import csv
import io
from typing import IO, Any

from api.services.errors import InvalidInput
from api.services.ingest.table import MiB
from core.data import InvalidDataError

HEADER_BYTES = MiB
"""The longest header read (10,000 columns of 100 characters)."""


def buffered(source: IO[bytes]) -> io.BufferedReader:
    """A reader that can peek at ``HEADER_BYTES`` without consuming them."""
    return io.BufferedReader(source, buffer_size=HEADER_BYTES)  # type: ignore[arg-type]


def read_header(stream: io.BufferedReader) -> list[str]:
    """The column names of the header, stripped; the stream stays at its start."""
    head = stream.peek(HEADER_BYTES)[:HEADER_BYTES]
    if not head:
        raise InvalidDataError("the file is empty")
    if b"\n" not in head and len(head) == HEADER_BYTES:
        raise InvalidDataError(f"the CSV header is longer than {HEADER_BYTES} bytes")
    try:
        line = head.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as error:
        raise InvalidDataError(f"the CSV header is not UTF-8 text: {error}") from None
    return [name.strip() for name in next(csv.reader([line]), [])]


def listed(names: list[str], most: int = 20) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} columns)" if len(names) > most
                                      else "")


def columns(names: list[str], target: str | None) -> tuple[list[int], int]:
    """The feature columns' indices and the target's."""
    if target is None:
        raise InvalidInput(("query", "target"), "a CSV or Parquet upload needs "
                           "target=<column name>: the column that holds the labels or targets",
                           kind="missing")
    if names.count(target) != 1:
        found = "appears more than once in" if names.count(target) else "is not a column of"
        raise InvalidInput(("query", "target"),
                           f"target {target!r} {found} the header ({listed(names)})")
    if len(names) == 1:
        raise InvalidDataError("the CSV has no feature columns besides the target")
    label = names.index(target)
    return [i for i in range(len(names)) if i != label], label


def ragged(line: int, got: int, expected: int) -> InvalidDataError:
    return InvalidDataError(f"CSV line {line} has {got} columns where the header has "
                            f"{expected}")


def bad_cell(line: int, name: str, value: Any, *, feature: bool) -> InvalidDataError:
    """A cell that is no number (a feature's), or no text (a target's)."""
    where = f"CSV line {line}, column {name!r}"
    if not feature:
        return InvalidDataError(f"{where} is not UTF-8 text")
    if value == "":
        return InvalidDataError(f"{where} is empty: every feature needs a number")
    return InvalidDataError(f"{where}: {value!r} is not a number")


def no_rows() -> InvalidDataError:
    return InvalidDataError("the CSV has a header and no data rows")
