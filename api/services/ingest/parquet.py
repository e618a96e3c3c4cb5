"""Reading a Parquet file in batches (pyarrow, the ``tabular`` extra). Its footer is at the
end: the source must be seekable. X takes the common numpy type of the feature columns
(all uint8 stays uint8); the target column's type says what y is."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np

from api.services.errors import InvalidInput
from api.services.ingest.csv_header import listed
from api.services.ingest.table import Batch, MiB, Table
from core.data import InvalidDataError

BATCH_ROWS = 1 << 16
NEEDS_PYARROW = ("reading Parquet needs pyarrow, which this server lacks: "
                 "pip install 'shardtrain[tabular]'")


def _numpy_column(column: Any, name: str, *, label: bool) -> np.ndarray:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_floating(kind):
        return column.to_numpy(zero_copy_only=False)
    if label and (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                  or pa.types.is_dictionary(kind)):
        return column.cast(pa.string()).to_numpy(zero_copy_only=False).astype(str)
    raise InvalidDataError(f"column {name!r} holds {kind}, not "
                           + ("labels or targets" if label else "numbers"))


@contextmanager
def parquet_table(source: IO[bytes], target: str | None) -> Iterator[Table]:
    """A Parquet file, ``target`` naming the column of labels or targets."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInput(("body",), NEEDS_PYARROW, kind="unsupported_format") from None
    if target is None:
        raise InvalidInput(("query", "target"), "a Parquet upload needs target=<column name>: "
                           "the column that holds the labels or targets", kind="missing")
    try:
        # Buffered column reads: a row group is decoded a page at a time, not whole.
        parquet = pq.ParquetFile(source, buffer_size=MiB, pre_buffer=False)
    except (pa.ArrowException, OSError) as error:
        raise InvalidDataError(f"not a Parquet file, or a truncated one: {error}") from None
    schema = parquet.schema_arrow
    names = schema.names
    if names.count(target) != 1:
        found = "appears more than once in" if names.count(target) else "is not a column of"
        raise InvalidInput(("query", "target"),
                           f"target {target!r} {found} the file ({listed(names)})")
    features = [name for name in names if name != target]
    if not features:
        raise InvalidDataError("the file has no feature columns besides the target")
    for name in features:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                or pa.types.is_boolean(kind)):
            raise InvalidDataError(f"column {name!r} holds {kind}, not numbers")
    x_dtype = np.result_type(*(schema.field(n).type.to_pandas_dtype() for n in features))

    def batches() -> Generator[Batch, None, None]:
        start = 0
        try:
            for record in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                for name in names:
                    column = record.column(name)
                    if column.null_count:
                        row = start + pc.index(column.is_null(), True).as_py()
                        raise InvalidDataError(f"row {row}, column {name!r} is empty (null)")
                X = np.empty((record.num_rows, len(features)), dtype=x_dtype)
                for i, name in enumerate(features):
                    X[:, i] = _numpy_column(record.column(name), name, label=False)
                yield Batch(start, X, _numpy_column(record.column(target), target, label=True))
                start += record.num_rows
        except (pa.ArrowException, OSError) as error:
            raise InvalidDataError(f"the Parquet file is damaged after row {start}: "
                                   f"{error}") from None
        if start == 0:
            raise InvalidDataError("the Parquet file has no rows")

    try:
        yield Table(batches(), len(features), x_dtype, n_rows=parquet.metadata.num_rows,
                    columns=features, target=target)
    finally:
        parquet.close()
