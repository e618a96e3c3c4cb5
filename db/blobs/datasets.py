"""How a dataset lies in the blob store, and how its rows are read back.

Layout ``rows`` (every dataset stored now), under ``datasets/<id>/``:

- ``X.bin``: X's rows in their stored order (``core.splits.ingest_order`` of the upload), C
  order, little-endian, in X's own dtype (uint8 stays uint8);
- ``y.bin``: y likewise: class indices (int32) into the dataset's sorted classes, or targets;
- ``manifest.json``, written last: dtypes, widths, rows, ``chunk_rows`` and the sha256 of
  every chunk of each file. A dataset without it is half made, and nothing reads it.

Chunk ``k`` holds rows ``k * chunk_rows`` onwards. A reader fetches the chunks that hold the
rows it asks for, one range read each, and checks each against its digest: a rank reads its
own rows and at most one chunk more at each end of them.

Layout ``npz`` (datasets stored before it): ``datasets/<id>/data.npz``, read whole.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from types import TracebackType

import numpy as np

from db.blobs.keys import MiB
from db.blobs.store import BlobStore, BlobWriter

CHUNK_BYTES = 4 * MiB
"""What a chunk of X weighs: a range read's fixed cost (a few ms) stays a small part of it,
and a shard over-reads at most one chunk at each end."""


def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}"


def chunk_rows_for(row_bytes: int, target: int = CHUNK_BYTES) -> int:
    """Rows of a chunk: ``target`` bytes of X, rounded down to a power of two."""
    rows = max(1, target // max(1, row_bytes))
    return 1 << (rows.bit_length() - 1)


class CorruptChunk(ValueError):
    """A chunk read back differs from what was written."""


@dataclass(frozen=True)
class Manifest:
    """What the ``rows`` layout holds: ``x_width`` features of ``x_dtype`` a row, and y of
    ``y_dtype`` (``y_width`` columns; 0: one value a row)."""

    n_rows: int
    chunk_rows: int
    x_dtype: str
    x_width: int
    y_dtype: str
    y_width: int
    x_chunks: list[str]
    y_chunks: list[str]
    version: int = 1

    def row_bytes(self, name: str) -> int:
        if name == "X":
            return self.x_width * np.dtype(self.x_dtype).itemsize
        return max(1, self.y_width) * np.dtype(self.y_dtype).itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of X.bin and y.bin together."""
        return self.n_rows * (self.row_bytes("X") + self.row_bytes("y"))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        return cls(**json.loads(raw))


class _ChunkedFile:
    """One array's bytes streamed into a blob, hashed chunk by chunk as they pass."""

    def __init__(self, writer: BlobWriter, chunk_bytes: int) -> None:
        self.writer, self.chunk_bytes = writer, chunk_bytes
        self.hash, self.filled = hashlib.sha256(), 0
        self.digests: list[str] = []

    def write(self, data: memoryview) -> None:
        self.writer.write(data)
        while len(data):
            take = min(len(data), self.chunk_bytes - self.filled)
            self.hash.update(data[:take])
            self.filled += take
            data = data[take:]
            if self.filled == self.chunk_bytes:
                self._close_chunk()

    def _close_chunk(self) -> None:
        self.digests.append(self.hash.hexdigest())
        self.hash, self.filled = hashlib.sha256(), 0

    def finish(self) -> list[str]:
        if self.filled:
            self._close_chunk()
        return self.digests


class RowsWriter:
    """Writes a dataset in the ``rows`` layout, batch after batch in stored order; ``commit``
    writes the manifest, ``abort`` (or an error in its ``with`` block) leaves nothing."""

    def __init__(self, store: BlobStore, dataset_id: str, *, x_dtype: np.dtype, x_width: int,
                 y_dtype: np.dtype, y_width: int, chunk_rows: int | None = None) -> None:
        self.store, self.prefix = store, dataset_prefix(dataset_id)
        self.x_dtype, self.y_dtype = x_dtype.newbyteorder("<"), y_dtype.newbyteorder("<")
        self.x_width, self.y_width = x_width, y_width
        self.chunk_rows = chunk_rows or chunk_rows_for(x_width * x_dtype.itemsize)
        self.n_rows = 0
        self._writers = [store.writer(f"{self.prefix}/X.bin"),
                         store.writer(f"{self.prefix}/y.bin")]
        self._files = [
            _ChunkedFile(self._writers[0], self.chunk_rows * x_width * x_dtype.itemsize),
            _ChunkedFile(self._writers[1],
                         self.chunk_rows * max(1, y_width) * y_dtype.itemsize)]

    def append(self, X: np.ndarray, y: np.ndarray) -> None:
        """The next rows: X ``(rows, x_width)``, y ``(rows,)`` or ``(rows, y_width)``."""
        x = np.ascontiguousarray(X, dtype=self.x_dtype)
        labels = np.ascontiguousarray(y, dtype=self.y_dtype)
        self._files[0].write(x.data.cast("B"))
        self._files[1].write(labels.data.cast("B"))
        self.n_rows += len(x)

    def commit(self) -> Manifest:
        """Publish the files, then the manifest that makes them a dataset."""
        try:
            x_chunks, y_chunks = (file.finish() for file in self._files)
            for writer in self._writers:
                writer.commit()
            manifest = Manifest(self.n_rows, self.chunk_rows, self.x_dtype.str, self.x_width,
                                self.y_dtype.str, self.y_width, x_chunks, y_chunks)
            self.store.put(f"{self.prefix}/manifest.json", manifest.to_json())
        except BaseException:
            self.abort()
            raise
        return manifest

    def abort(self) -> None:
        for writer in self._writers:
            writer.abort()
        self.store.delete_prefix(self.prefix + "/")

    def __enter__(self) -> RowsWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            self.abort()


class StoredRows:
    """The rows of a dataset in the ``rows`` layout, read by range (a ``core.rows.RowSource``)."""

    def __init__(self, store: BlobStore, dataset_id: str, manifest: Manifest | None = None
                 ) -> None:
        self.store, self.prefix = store, dataset_prefix(dataset_id)
        self.manifest = manifest or Manifest.from_json(
            store.get(f"{self.prefix}/manifest.json"))

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start .. stop - 1``: X ``(rows, x_width)`` and y, each chunk checked.
        Raises CorruptChunk."""
        m = self.manifest
        if not 0 <= start <= stop <= m.n_rows:
            raise IndexError(f"rows {start}..{stop - 1} of a dataset of {m.n_rows}")
        X = self._gather("X", m.x_dtype, (m.x_width,), m.x_chunks, start, stop)
        y = self._gather("y", m.y_dtype, (m.y_width,) if m.y_width else (), m.y_chunks,
                         start, stop)
        return X, y

    def _gather(self, name: str, dtype: str, tail: tuple[int, ...], digests: list[str],
                start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *tail), dtype=dtype)
        flat = out.reshape(-1).view(np.uint8)
        rows, row_bytes = self.manifest.chunk_rows, self.manifest.row_bytes(name)
        for k in range(start // rows, -(-stop // rows)):
            first, last = k * rows, min((k + 1) * rows, self.manifest.n_rows)
            data = self.store.get_range(f"{self.prefix}/{name}.bin", first * row_bytes,
                                        (last - first) * row_bytes)
            if (len(data) != (last - first) * row_bytes
                    or hashlib.sha256(data).hexdigest() != digests[k]):
                raise CorruptChunk(f"{self.prefix}: chunk {k} of {name}.bin is damaged")
            lo, hi = max(start, first), min(stop, last)
            flat[(lo - start) * row_bytes:(hi - start) * row_bytes] = np.frombuffer(
                data, np.uint8)[(lo - first) * row_bytes:(hi - first) * row_bytes]
        return out


def npz_key(dataset_id: str) -> str:
    """Where the ``npz`` layout keeps a dataset."""
    return f"{dataset_prefix(dataset_id)}/data.npz"


def read_npz(store: BlobStore, dataset_id: str) -> dict[str, np.ndarray]:
    """The arrays of a dataset in the ``npz`` layout, read whole."""
    with np.load(io.BytesIO(store.get(npz_key(dataset_id))), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
