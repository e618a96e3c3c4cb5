"""Reading an uploaded body into the arrays ``X`` and ``y``: .npz, CSV or JSON.

Only the reading is here; what makes the arrays valid training data is checked afterwards, for
every format alike (``api.services.datasets``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
import zipfile
from pathlib import PurePath
from typing import Any, Literal

import numpy as np

from api.services.errors import InvalidInput
from core.data import InvalidDataError

UploadFormat = Literal["npz", "csv", "json"]

MEDIA_TYPES: dict[str, UploadFormat] = {
    "application/octet-stream": "npz",
    "application/x-npz": "npz",
    "text/csv": "csv",
    "application/json": "json",
}
EXTENSIONS: dict[str, UploadFormat] = {".npz": "npz", ".csv": "csv", ".json": "json"}
JSON_SHAPE = '{"X": [[...], ...], "y": [...]}'


def format_of_filename(filename: str) -> UploadFormat:
    extension = PurePath(filename).suffix.lower()
    if extension not in EXTENSIONS:
        raise InvalidInput(("body", "file"), f"cannot tell the format of {filename!r}: name it "
                           f"{', '.join('*' + e for e in EXTENSIONS)}", kind="unsupported_format")
    return EXTENSIONS[extension]


def read_arrays(*, content: bytes, fmt: UploadFormat, target: str | None,
                max_expanded_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` as the upload holds them; ``target`` names the label column of a CSV.

    ``max_expanded_bytes`` bounds what a compressed .npz may decompress to, checked before
    decompressing. Raises ``InvalidDataError`` for unreadable content and ``InvalidInput`` for
    a misused ``target``.
    """
    if fmt == "csv":
        return _read_csv(content, target)
    if target is not None:
        raise InvalidInput(("query", "target"),
                           f"target names the label column of a CSV upload; this one is {fmt}")
    if fmt == "npz":
        return _read_npz(content, max_expanded_bytes)
    return _read_json(content)


def _read_npz(content: bytes, max_expanded_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
            if expanded > max_expanded_bytes:
                raise InvalidDataError(f"the .npz expands to {expanded} bytes, more than the "
                                       f"{max_expanded_bytes} allowed")
            for info in archive.infolist():
                _check_declared_size(archive, info)
    except zipfile.BadZipFile as error:
        raise InvalidDataError("the body is not an .npz file (a zip of .npy arrays X and y); "
                               "send CSV as text/csv and JSON as application/json") from error
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            missing = [name for name in ("X", "y") if name not in npz.files]
            if missing:
                raise InvalidDataError(f"the .npz lacks the arrays {', '.join(missing)} "
                                       f"(it holds: {', '.join(npz.files) or 'nothing'})")
            return npz["X"], npz["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        # Object arrays (pickles) land here too: allow_pickle=False refuses them.
        raise InvalidDataError(f"cannot read the .npz: {error}") from error


def _check_declared_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse an array whose header declares more data than its member holds: numpy would
    allocate the declared size before finding out (petabytes, for a forged header)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        # Every member: np.load reads "X" as it reads "X.npy".
        with archive.open(info) as member:
            if member.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                return  # not an array: np.load refuses it if it is X or y
            version = (ord(member.read(1)), ord(member.read(1)))
            if version not in readers:
                return  # np.load checks what it reads of it as it goes
            shape, _, dtype = readers[version](member)
            header_bytes = member.tell()
    except (ValueError, OSError, EOFError, TypeError) as error:
        raise InvalidDataError(f"cannot read the .npz: {info.filename}: {error}") from error
    declared = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and declared > info.file_size - header_bytes:
        raise InvalidDataError(
            f"cannot read the .npz: {info.filename} declares shape {shape} of {dtype} "
            f"({declared} bytes) but holds {info.file_size - header_bytes} bytes")


def _text(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")  # a BOM, as spreadsheet exports write, is dropped
    except UnicodeDecodeError as error:
        raise InvalidDataError(f"the body is not UTF-8 text: {error}") from error


def _read_csv(content: bytes, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    if target is None:
        raise InvalidInput(("query", "target"), "a CSV upload needs target=<column name>: the "
                           "column that holds the labels or targets", kind="missing")
    text = _text(content)
    header = [name.strip() for name in next(csv.reader(io.StringIO(text)), [])]
    if header.count(target) != 1:
        found = "appears more than once in" if header.count(target) else "is not a column of"
        raise InvalidInput(("query", "target"),
                           f"target {target!r} {found} the header ({', '.join(header)})")
    label_column = header.index(target)
    if len(header) == 1:
        raise InvalidDataError("the CSV has no feature columns besides the target")
    if not any(line.strip() for line in text.splitlines()[1:]):
        raise InvalidDataError("the CSV has a header and no data rows")
    # comments=None: '#' may be part of a label. Reading every column (the label one as 0)
    # makes loadtxt refuse rows whose column count differs from the others.
    options: dict[str, Any] = {"delimiter": ",", "skiprows": 1, "quotechar": '"',
                               "comments": None}
    with warnings.catch_warnings():
        # An empty table warns; check_arrays then says that X is empty.
        warnings.simplefilter("ignore", UserWarning)
        try:
            table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2,
                               converters={label_column: lambda _cell: 0.0}, **options)
            labels = np.loadtxt(io.StringIO(text), dtype=str, ndmin=1,
                                usecols=[label_column], **options)
        except ValueError as error:
            raise InvalidDataError(f"CSV: {error}") from error
    features = [i for i in range(table.shape[1]) if i != label_column]
    return table[:, features], _labels_or_targets(np.char.strip(labels), target)


def _labels_or_targets(cells: np.ndarray, column: str) -> np.ndarray:
    """Integers are class labels, other numbers regression targets, the rest string labels."""
    empty = np.flatnonzero(cells == "")
    if len(empty):
        raise InvalidDataError(f"CSV: column {column!r} is empty in data row {empty[0] + 1}")
    for dtype in (np.int64, np.float64):
        try:
            return cells.astype(dtype)
        except (ValueError, OverflowError):
            continue
    return cells


def _read_json(content: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        document = json.loads(_text(content))
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
    return _json_array(document["X"], "X"), _json_array(document["y"], "y")


def _json_array(value: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged rows
        raise InvalidDataError(f"{name} must be a list of rows of equal length") from error
    if array.dtype.kind == "O":
        raise InvalidDataError(f"{name} must hold only numbers (or, in y, labels): "
                               "no null, object or list where a value belongs")
    return array
