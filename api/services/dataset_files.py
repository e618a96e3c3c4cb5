"""What format an upload is in, told by its Content-Type or its file name."""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from api.services.errors import InvalidInput

UploadFormat = Literal["npz", "csv", "parquet", "json"]

MEDIA_TYPES: dict[str, UploadFormat] = {
    "application/octet-stream": "npz",
    "application/x-npz": "npz",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/json": "json",
}
EXTENSIONS: dict[str, UploadFormat] = {".npz": "npz", ".csv": "csv", ".parquet": "parquet",
                                       ".json": "json"}
NPY_HOLDS_ONE_ARRAY = ("an .npy holds one array; a dataset needs X and y: save them together "
                       "with numpy.savez('data.npz', X=X, y=y)")


def format_of_filename(filename: str) -> UploadFormat:
    extension = PurePath(filename).suffix.lower()
    if extension == ".npy":
        raise InvalidInput(("body", "file"), NPY_HOLDS_ONE_ARRAY, kind="unsupported_format")
    if extension not in EXTENSIONS:
        raise InvalidInput(("body", "file"), f"cannot tell the format of {filename!r}: name it "
                           f"{', '.join('*' + e for e in EXTENSIONS)}", kind="unsupported_format")
    return EXTENSIONS[extension]
