"""Reading an .npz (arrays X and y) in batches: both members streamed side by side, stored or
compressed, their .npy headers checked before anything is allocated."""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from api.services.dataset_files import NPY_HOLDS_ONE_ARRAY
from api.services.ingest.table import BATCH_BYTES, Batch, Table
from core.data import InvalidDataError

_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


@dataclass(frozen=True)
class NpyHeader:
    """What a .npy header declares; its data starts ``offset`` bytes after the header's
    start."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    offset: int

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(stream: IO[bytes], name: str, available: int) -> NpyHeader:
    """The header of the .npy ``name`` at the stream's position. ``available``: the bytes
    the member holds, so that a header declaring more (numpy would allocate it) is refused."""
    fmt = np.lib.format
    try:
        begin = stream.tell()
        version = fmt.read_magic(stream)  # type: ignore[no-untyped-call]
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)  # type: ignore[no-untyped-call]
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)  # type: ignore[no-untyped-call]
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (*_DAMAGED, SyntaxError, TypeError, struct.error) as error:
        raise InvalidDataError(f"{name} is not a .npy array: {error}") from None
    header = NpyHeader(tuple(shape), dtype, stream.tell() - begin)
    if dtype.hasobject:
        raise InvalidDataError(f"{name} holds Python objects ({dtype}), which would be read as "
                               "pickles: send numbers or text")
    if fortran and len(shape) > 1:
        raise InvalidDataError(f"{name} is stored column-major (Fortran order); save it with "
                               "numpy.ascontiguousarray first")
    if not shape:
        raise InvalidDataError(f"{name} is a scalar, not an array of rows")
    if header.data_bytes > available - header.offset:
        raise InvalidDataError(f"{name} declares shape {header.shape} of {dtype} "
                               f"({header.data_bytes} bytes) but holds "
                               f"{available - header.offset} bytes")
    return header


def npy_rows(stream: IO[bytes], header: NpyHeader, per_batch: int, name: str
             ) -> Iterator[np.ndarray]:
    """The array's rows, ``per_batch`` at a time, from the stream's position."""
    n = header.shape[0]
    for start in range(0, n, per_batch):
        count = min(per_batch, n - start)
        want = count * header.row_bytes
        data = bytearray()
        while len(data) < want and (chunk := stream.read(want - len(data))):
            data += chunk
        if len(data) != want:
            raise InvalidDataError(f"{name} is truncated at row "
                                   f"{start + len(data) // max(1, header.row_bytes)} of {n}")
        yield np.frombuffer(data, dtype=header.dtype).reshape((count, *header.shape[1:]))


def _not_an_npz(source: IO[bytes], error: Exception) -> InvalidDataError:
    """Why the upload is no zip, with a hint when it is a file of another kind."""
    source.seek(0)
    head = source.read(8)
    if head.startswith(b"\x93NUMPY"):
        return InvalidDataError(f"this is not an .npz but {NPY_HOLDS_ONE_ARRAY}")
    if head.startswith(b"PAR1"):
        return InvalidDataError("this is a Parquet file: upload it as Parquet (Content-Type "
                                "application/vnd.apache.parquet, or a file named *.parquet)")
    return InvalidDataError(f"the upload is not an .npz file (a zip of .npy arrays X and y): "
                            f"{error}; send CSV as text/csv and JSON as application/json")


@contextmanager
def npz_table(source: IO[bytes], target: str | None = None) -> Iterator[Table]:
    """The arrays X and y of an .npz (a zip: ``source`` must be seekable)."""
    try:
        archive = zipfile.ZipFile(source)
    except _DAMAGED as error:
        raise _not_an_npz(source, error) from None
    with archive:
        found = set(archive.namelist())
        members = {name: next((m for m in (f"{name}.npy", name) if m in found), None)
                   for name in ("X", "y")}
        missing = [name for name, member in members.items() if member is None]
        if missing:
            raise InvalidDataError(f"the .npz lacks the arrays {', '.join(missing)} "
                                   f"(it holds: {', '.join(sorted(found)) or 'nothing'})")
        x_member, y_member = (str(members[name]) for name in ("X", "y"))
        try:
            xs, ys = archive.open(x_member), archive.open(y_member)
        except _DAMAGED as error:
            raise InvalidDataError(f"the .npz is damaged: {error}") from None
        with xs, ys:
            hx = read_npy_header(xs, x_member, archive.getinfo(x_member).file_size)
            hy = read_npy_header(ys, y_member, archive.getinfo(y_member).file_size)
            if len(hx.shape) != 2 or hx.dtype.kind not in "biuf":
                raise InvalidDataError(f"X must be a 2-D array of numbers, got shape "
                                       f"{hx.shape} of {hx.dtype}")
            if 0 in hx.shape:
                raise InvalidDataError(f"X is empty, shape {hx.shape}")
            if len(hy.shape) not in (1, 2) or hy.shape[0] != hx.shape[0]:
                raise InvalidDataError(f"y must have {hx.shape[0]} rows like X, got shape "
                                       f"{hy.shape}")
            per_batch = max(1, BATCH_BYTES // hx.row_bytes)

            def batches() -> Generator[Batch, None, None]:
                start = 0
                rows = zip(npy_rows(xs, hx, per_batch, x_member),
                           npy_rows(ys, hy, per_batch, y_member), strict=True)
                while True:
                    try:
                        X, y = next(rows, (None, None))
                    except InvalidDataError:
                        raise
                    except _DAMAGED as error:
                        raise InvalidDataError(f"the .npz is damaged after row {start}: "
                                               f"{error}") from None
                    if X is None or y is None:
                        return
                    yield Batch(start, X, y)
                    start += len(X)

            yield Table(batches(), hx.shape[1], hx.dtype, n_rows=hx.shape[0])
