"""The blob store as a directory: the embedded default, where API and workers share a disk.

A blob is the file ``root/<key>``. Writers fill a file in ``root/.tmp`` and rename it into
place (atomic, as ``root`` is one filesystem). A multipart upload keeps its parts as files in
``root/.multipart/<upload id>/`` until it completes. Neither dot-directory can be a key.

Unlike S3, a key cannot be both a blob and the directory of others ("a" and "a/b").
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from db.blobs.keys import MIN_PART, MiB, check_key, check_part_number, check_prefix, check_range
from db.blobs.store import COPY_CHUNK, BlobNotFound, BlobStore, BlobWriter, Bytes, InvalidParts

_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_PART = re.compile(r"(\d{5})-([0-9a-f]{32})")


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``. ``fsync``: each committed blob and its directory entry
    reach the disk before the commit returns (off only where a crash may lose them: tests)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._tmp = self.root / ".tmp"
        self._multipart = self.root / ".multipart"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._multipart.mkdir(exist_ok=True)

    def path(self, key: str) -> Path:
        """Where the blob ``key`` is (or would be); raises ValueError for an invalid key."""
        return self.root / check_key(key)

    def writer(self, key: str) -> BlobWriter:
        return _LocalWriter(self, check_key(key))

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    def open_seekable(self, key: str, buffer_size: int = 4 * MiB) -> BinaryIO:
        return self.open(key)  # a file seeks already

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        with self.open(key) as file:
            file.seek(start)
            return file.read(length)

    def size(self, key: str) -> int:
        path = self.path(key)
        try:
            if path.is_file():
                return path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            pass
        raise BlobNotFound(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()
        # Directories left empty go too, up to the root, so that deleted prefixes leave no
        # trace; a writer publishing into one meanwhile makes it again (_publish).
        for parent in path.parents:
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def keys(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        # Only the directory that holds the prefix is walked.
        head = prefix.rpartition("/")[0]
        found = []
        for directory, names, files in os.walk(self.root / head):
            names[:] = [name for name in names if not name.startswith(".")]
            relative = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix) and not name.startswith("."):
                    found.append(key)
        return iter(sorted(found))

    def start_multipart(self, key: str) -> str:
        check_key(key)
        upload_id = uuid.uuid4().hex
        directory = self._multipart / upload_id
        directory.mkdir()
        (directory / "key").write_text(key)
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, data: Bytes) -> str:
        check_part_number(number)
        directory = self._upload(key, upload_id)
        # A tag of its own for each upload of a part, as an ETag: completing with the tag of a
        # part since replaced fails, instead of taking bytes the caller did not mean.
        tag = uuid.uuid4().hex
        temp = self._temp()
        with open(temp, "wb") as file:
            file.write(data)
            if self.fsync:
                os.fsync(file.fileno())
        os.replace(temp, directory / f"{number:05d}-{tag}")
        for old in directory.glob(f"{number:05d}-*"):
            if old.name != f"{number:05d}-{tag}":
                old.unlink(missing_ok=True)
        return tag

    def complete_multipart(self, key: str, upload_id: str,
                           parts: Sequence[tuple[int, str]]) -> None:
        directory = self._upload(key, upload_id)
        ordered = sorted(parts)
        paths = [directory / f"{number:05d}-{tag}" for number, tag in ordered]
        numbers = [number for number, _ in ordered]
        if not paths or len(set(numbers)) != len(numbers):
            raise InvalidParts(f"upload {upload_id} of {key}: no parts, or a part twice")
        for (number, _), path in zip(ordered, paths, strict=True):
            if not _PART.fullmatch(path.name) or not path.is_file():
                raise InvalidParts(f"part {number} of upload {upload_id} is missing or differs")
        for (number, _), path in zip(ordered[:-1], paths[:-1], strict=True):
            if path.stat().st_size < MIN_PART:
                raise InvalidParts(f"part {number} of upload {upload_id} is smaller than "
                                   f"{MIN_PART} bytes and not the last")
        with self.writer(key) as writer:
            for path in paths:
                with open(path, "rb") as part:
                    while chunk := part.read(COPY_CHUNK):
                        writer.write(chunk)
        shutil.rmtree(directory, ignore_errors=True)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(BlobNotFound):
            shutil.rmtree(self._upload(key, upload_id), ignore_errors=True)

    def _abort_multiparts(self, prefix: str) -> int:
        aborted = 0
        for directory in self._multipart.iterdir():
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                if (directory / "key").read_text().startswith(prefix):
                    shutil.rmtree(directory, ignore_errors=True)
                    aborted += 1
        return aborted

    def _upload(self, key: str, upload_id: str) -> Path:
        check_key(key)
        directory = self._multipart / upload_id
        try:
            if _UPLOAD_ID.fullmatch(upload_id) and (directory / "key").read_text() == key:
                return directory
        except (FileNotFoundError, NotADirectoryError):
            pass
        raise BlobNotFound(f"no multipart upload {upload_id} of {key}")

    def _temp(self) -> Path:
        return self._tmp / uuid.uuid4().hex

    def _publish(self, temp: Path, key: str) -> None:
        target = self.path(key)
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(temp, target)
                break
            except FileNotFoundError:
                # A delete pruned the directory between mkdir and replace.
                if attempt == 2:
                    raise
        if self.fsync:
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._temp = store._temp()
        # Open for the writer's life: commit or abort closes it.
        self._file: BinaryIO = open(self._temp, "wb")  # noqa: SIM115

    def _write(self, data: memoryview) -> int:
        return self._file.write(data)

    def _commit(self) -> None:
        self._file.flush()
        if self._store.fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        self._store._publish(self._temp, self.key)

    def _abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)
