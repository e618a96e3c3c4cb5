"""The blob store's contract: keys to bytes, written atomically, read whole or by ranges.

Every write is atomic: a reader sees the old bytes or the new ones, never a part, and a
writer that fails or is aborted leaves nothing behind. There are two ways to write a large
blob without holding it:

* ``writer(key)``: one process streams chunks in, then commits (or aborts);
* ``start_multipart`` / ``put_part`` / ``complete_multipart``: the parts arrive in separate
  requests, possibly to separate processes (resumable uploads); the caller keeps the upload
  id and the parts' tags between them. Every part but the last must hold at least
  ``MIN_PART`` bytes (S3's rule, which both stores enforce alike).

Stores are thread-safe; a process makes one per configuration (``db.blobs.factory``).
"""

from __future__ import annotations

import contextlib
import functools
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import IO, BinaryIO

from db.blobs.keys import MiB, check_prefix
from db.blobs.readers import RangeReader

Bytes = bytes | bytearray | memoryview
COPY_CHUNK = 1 * MiB
"""What ``put`` reads from a stream at a time."""


class BlobNotFound(KeyError):
    """No blob has this key (or no multipart upload has this id)."""


class InvalidParts(ValueError):
    """A multipart upload cannot complete: a part is missing, differs from its tag, or is
    smaller than ``MIN_PART`` and not the last."""


class BlobWriter(ABC):
    """Takes chunks, then ``commit()`` makes them the blob at once or ``abort()`` drops them.

    As a context manager it commits on a clean exit and aborts on an exception.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.written = 0
        self.closed = False

    def write(self, data: Bytes) -> int:
        """Appends ``data``; raises ValueError once committed or aborted."""
        if self.closed:
            raise ValueError(f"the writer of {self.key} is closed")
        n = self._write(memoryview(data).cast("B"))
        self.written += n
        return n

    def commit(self) -> int:
        """Publishes the blob and returns its size; raises ValueError if already closed."""
        if self.closed:
            raise ValueError(f"the writer of {self.key} is closed")
        self.closed = True
        try:
            self._commit()
        except BaseException:
            self._abort()
            raise
        return self.written

    def abort(self) -> None:
        """Drops what was written; nothing if already committed or aborted."""
        if not self.closed:
            self.closed = True
            self._abort()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            if not self.closed:
                self.commit()
        else:
            self.abort()

    @abstractmethod
    def _write(self, data: memoryview) -> int: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...


class BlobStore(ABC):
    """Blobs by key; every method raises ValueError for an invalid key."""

    @abstractmethod
    def writer(self, key: str) -> BlobWriter:
        """A writer whose commit makes ``key`` the bytes written."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A buffered stream of the blob from its start; raises BlobNotFound."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start``: fewer at the end, none past it; raises
        BlobNotFound."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The blob's size in bytes; raises BlobNotFound."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a blob has this key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Removes the blob; nothing if there is none."""

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys that start with ``prefix`` (a string prefix: "a/b" finds "a/bc"), sorted."""

    @abstractmethod
    def start_multipart(self, key: str) -> str:
        """An upload id for ``put_part``, ``complete_multipart`` and ``abort_multipart``."""

    @abstractmethod
    def put_part(self, key: str, upload_id: str, number: int, data: Bytes) -> str:
        """Stores part ``number`` (1..10,000, again to replace it) and returns its tag;
        raises BlobNotFound for an unknown upload."""

    @abstractmethod
    def complete_multipart(self, key: str, upload_id: str,
                           parts: Sequence[tuple[int, str]]) -> None:
        """Makes the parts ``(number, tag)``, in the order of their numbers, the blob at once;
        raises InvalidParts, or BlobNotFound for an unknown upload."""

    @abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drops the upload and its parts; nothing if there is no such upload."""

    @abstractmethod
    def _abort_multiparts(self, prefix: str) -> int:
        """Aborts the unfinished multipart uploads of keys under ``prefix``; returns how many."""

    def put(self, key: str, data: Bytes | IO[bytes]) -> int:
        """Stores bytes, or a binary stream read to its end, and returns the size."""
        with self.writer(key) as writer:
            if isinstance(data, (bytes, bytearray, memoryview)):
                writer.write(data)
            else:
                while chunk := data.read(COPY_CHUNK):
                    writer.write(chunk)
        return writer.written

    def get(self, key: str) -> bytes:
        """The whole blob; raises BlobNotFound."""
        with contextlib.closing(self.open(key)) as stream:
            return stream.read()

    def open_seekable(self, key: str, buffer_size: int = 4 * MiB) -> BinaryIO:
        """A seekable, buffered reader that fetches what is read by ranges (what zipfile and
        Parquet need: their directories are at the end); raises BlobNotFound."""
        raw = RangeReader(functools.partial(self.get_range, key), self.size(key))
        return io.BufferedReader(raw, buffer_size=buffer_size)  # type: ignore[return-value]

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every blob under ``prefix`` and aborts the unfinished uploads there;
        returns the number of blobs deleted. Raises ValueError for an empty prefix."""
        if not prefix:
            raise ValueError("delete_prefix needs a prefix: it will not empty the store")
        check_prefix(prefix)
        self._abort_multiparts(prefix)
        return self._delete_many(list(self.keys(prefix)))

    def _delete_many(self, keys: list[str]) -> int:
        for key in keys:
            self.delete(key)
        return len(keys)
