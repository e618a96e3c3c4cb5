"""Reading a JSON upload, ``{"X": [[...], ...], "y": [...]}``: small data, read whole (at most
``max_body_bytes``), then ingested as arrays are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np

from api.services.errors import InvalidInput
from api.services.ingest.table import Table, array_table
from core.data import InvalidDataError

JSON_SHAPE = '{"X": [[...], ...], "y": [...]}'


def text_of(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")  # a BOM, as spreadsheet exports write, is dropped
    except UnicodeDecodeError as error:
        raise InvalidDataError(f"the upload is not UTF-8 text: {error}") from error


def json_arrays(content: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` as the document holds them."""
    try:
        document = json.loads(text_of(content))
    except json.JSONDecodeError as error:
        raise InvalidDataError(f"the body is not JSON ({error}); expected {JSON_SHAPE}") from error
    except RecursionError as error:
        raise InvalidDataError(f"the JSON nests too deep for {JSON_SHAPE}") from error
    if not isinstance(document, dict):
        raise InvalidDataError(f"a JSON upload is an object {JSON_SHAPE}, not a "
                               f"{type(document).__name__}")
    missing, extra = sorted({"X", "y"} - set(document)), sorted(set(document) - {"X", "y"})
    if missing or extra:
        raise InvalidDataError(
            f"a JSON upload is an object {JSON_SHAPE}: "
            + "; ".join([*([f"it lacks {', '.join(missing)}"] if missing else []),
                         *([f"{', '.join(map(repr, extra))} not expected"] if extra else [])]))
    return _array(document["X"], "X"), _array(document["y"], "y")


def _array(value: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged rows
        raise InvalidDataError(f"{name} must be a list of rows of equal length") from error
    if array.dtype.kind == "O":
        raise InvalidDataError(f"{name} must hold only numbers (or, in y, labels): "
                               "no null, object or list where a value belongs")
    return array


@contextmanager
def json_table(source: IO[bytes], max_bytes: int) -> Iterator[Table]:
    content = source.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise InvalidInput(("body",), f"a JSON upload holds at most max_body_bytes={max_bytes} "
                           "bytes: send larger data as CSV, Parquet or .npz",
                           kind="limit_exceeded")
    yield array_table(*json_arrays(content))
