"""Which reader opens an upload of each format."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import IO

from api.services.dataset_files import UploadFormat
from api.services.errors import InvalidInput
from api.services.ingest.csv_arrow import arrow_csv
from api.services.ingest.csv_text import text_csv
from api.services.ingest.json_body import json_table
from api.services.ingest.npz import npz_table
from api.services.ingest.parquet import parquet_table
from api.services.ingest.table import Table


def pyarrow_installed() -> bool:
    """Whether the ``tabular`` extra is: CSV is then read by pyarrow, else by ``csv``."""
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


def open_table(source: IO[bytes], *, fmt: UploadFormat, target: str | None,
               max_json_bytes: int) -> AbstractContextManager[Table]:
    """The reader of ``fmt`` on ``source``; ``target`` names a CSV's or Parquet's column of
    labels or targets, and only theirs."""
    if fmt in ("npz", "json") and target is not None:
        raise InvalidInput(("query", "target"), "target names the label column of a CSV or "
                           f"Parquet upload; this one is {fmt}")
    if fmt == "npz":
        return npz_table(source)
    if fmt == "json":
        return json_table(source, max_json_bytes)
    if fmt == "parquet":
        return parquet_table(source, target)
    return (arrow_csv if pyarrow_installed() else text_csv)(source, target)
