"""Reading a CSV in batches with pyarrow's streaming reader (the ``tabular`` extra).

Features are parsed as float64 (an empty cell is an error, not a null: ``null_values=[]``);
the target column stays text, its kind decided over the whole column (``labels``). Parsing
is single-threaded: with threads pyarrow's errors lose their row numbers. Memory: pyarrow
reads ahead many blocks in the background, so the peak grows by about 45 blocks (1 MiB
blocks: about 55 MiB); a block must hold the longest row.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from contextlib import contextmanager
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
from api.services.ingest.table import Batch, MiB, Table
from core.data import InvalidDataError

BLOCK_BYTES = MiB

_RAGGED = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")
_CELL = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error to \w+: "
                   r"invalid (?:value '(.*)'|UTF8 data)$", re.DOTALL)
_ROW = re.compile(r"Row #(\d+)")


def _error(error: Exception, names: list[str], label: int) -> InvalidDataError:
    """pyarrow's message in our words. Its "Row #N" counts the header as 1: the line."""
    message = str(error)
    if match := _RAGGED.search(message):
        line, expected, got = (int(group) for group in match.groups())
        return ragged(line, got, expected)
    if (match := _CELL.search(message)) and int(match.group(1)) < len(names):
        column, line = int(match.group(1)), int(match.group(2))
        return bad_cell(line, names[column], match.group(3), feature=column != label)
    return InvalidDataError("CSV " + _ROW.sub(lambda m: f"line {m.group(1)}",
                                              message.replace("CSV parse error: ", "")))


@contextmanager
def arrow_csv(source: IO[bytes], target: str | None) -> Iterator[Table]:
    """A CSV with a header, ``target`` naming the column of labels or targets."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    stream = buffered(source)
    names = read_header(stream)
    features, label = columns(names, target)
    # Our own column names: the header's may repeat or be empty; errors name the real ones.
    ids = [f"c{i}" for i in range(len(names))]
    options = {
        "read_options": pa_csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False,
                                           column_names=ids, skip_rows=1),
        # Quoted values may span lines, as the standard library's reader allows.
        "parse_options": pa_csv.ParseOptions(newlines_in_values=True),
        "convert_options": pa_csv.ConvertOptions(
            column_types={**{ids[i]: pa.float64() for i in features},
                          ids[label]: pa.string()},
            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False),
    }

    def batches() -> Generator[Batch, None, None]:
        start = 0
        reader = None
        try:
            reader = pa_csv.open_csv(stream, **options)  # parses the first block already
            for record in reader:
                if record.num_rows == 0:
                    continue
                X = np.empty((record.num_rows, len(features)))
                for j, i in enumerate(features):
                    X[:, j] = record.column(i).to_numpy()
                y = record.column(label).to_numpy(zero_copy_only=False).astype(str)
                yield Batch(start, X, y)
                start += record.num_rows
        except pa.ArrowInvalid as error:
            raise _error(error, names, label) from None
        finally:
            if reader is not None:
                reader.close()
        if start == 0:
            raise no_rows()

    try:
        yield Table(batches(), len(features), np.dtype(np.float64),
                    columns=[names[i] for i in features], target=names[label], csv=True,
                    y_text=True)
    finally:
        stream.detach()  # the caller's source stays open: it is the caller's to close
