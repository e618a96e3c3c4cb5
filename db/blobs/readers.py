"""Blobs as the file objects that numpy, zipfile and pyarrow read: raw streams to buffer.

``io.BufferedReader`` (and through it zipfile, ``np.load`` and pyarrow) needs an
``io.RawIOBase``: something with ``readinto``, ``readable`` and, to seek, ``seek``/``tell``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Protocol


class RangeReader(io.RawIOBase):
    """A seekable raw reader of ``size`` bytes that fetches each read with ``fetch(start,
    length)`` (which returns fewer bytes at the end)."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int) -> None:
        self._fetch = fetch
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Moves to ``offset`` from the start, the position or the end; raises ValueError for
        a negative position."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not view or self._position >= self._size:
            return 0
        data = self._fetch(self._position, len(view))
        view[:len(data)] = data
        self._position += len(data)
        return len(data)

    def readall(self) -> bytes:
        # RawIOBase's own would fetch the rest in 8 KiB requests.
        if self._position >= self._size:
            return b""
        data = self._fetch(self._position, self._size - self._position)
        self._position += len(data)
        return data


class _Body(Protocol):
    def read(self, amt: int | None = ...) -> bytes: ...

    def close(self) -> None: ...


class StreamReader(io.RawIOBase):
    """A raw reader over any ``read(n)``/``close()`` stream, such as botocore's
    ``StreamingBody``, which is no RawIOBase: ``io.BufferedReader`` and pyarrow would take it
    for closed."""

    def __init__(self, body: _Body) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
