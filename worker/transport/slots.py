"""Shared slots: the bytes of a link whose two ends run on one host.

A leader and a rank on one host need not push every step through the kernel's TCP stack. The
sender copies a payload into a slot of a memory segment both have mapped, and the link's frame
carries its length alone. What does not fit in a slot travels in the frame.

Each direction has two slots, used in turn: a receiver may still read one payload while the
next is written into the other slot. A slot is written again only once the receiver has said,
in a frame's header, that it is done with what the slot held (``worker.transport.links``).

The segment is a file in ``shared_memory_dir`` (a tmpfs). The leader creates it with a random
name and a random token in its first bytes; the rank maps it and checks the token. The name is
removed once the rank has mapped it (or refused), so nothing outlives the two processes. A
rank on another host, or in a container with a /dev/shm of its own, finds no such file: its
link stays plain TCP.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_TOKEN_BYTES = 16
_ALIGN = 64  # slots start on cache lines; the vectors in a payload are 8-aligned within it
SLOTS = 2  # per direction


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


def _segment_bytes(slot_bytes: int) -> int:
    """The token's cache line, then the slots of both directions."""
    return _ALIGN + 2 * SLOTS * slot_bytes


class SharedSlots:
    """One end's view of a segment: the two slots it writes and the two it reads. ``index``
    counts a direction's payloads, which take the slots in turn."""

    def __init__(self, memory: mmap.mmap, slot_bytes: int, direction: int) -> None:
        self._memory = memory
        self._view = memoryview(memory)
        self.slot_bytes = slot_bytes
        self._direction = direction  # the leader writes direction 0, the rank direction 1

    def _slot(self, direction: int, index: int) -> memoryview:
        start = _ALIGN + (direction * SLOTS + index % SLOTS) * self.slot_bytes
        return self._view[start:start + self.slot_bytes]

    def write(self, index: int, parts: list[memoryview]) -> int:
        """Copy ``parts`` one after the other into outgoing slot ``index``; their length."""
        slot, offset = self._slot(self._direction, index), 0
        for part in parts:
            slot[offset:offset + len(part)] = part
            offset += len(part)
        return offset

    def read(self, index: int, length: int) -> memoryview:
        """The payload of ``length`` bytes in incoming slot ``index`` (a view, not a copy)."""
        return self._slot(1 - self._direction, index)[:length]

    def close(self) -> None:
        self._view.release()
        with contextlib.suppress(BufferError):  # views still held: unmapped when they go
            self._memory.close()


@dataclass(frozen=True)
class SlotOffer:
    """A segment offered to a rank: its file, the size of a slot and the token in its first
    bytes. Without a path, nothing is offered."""

    path: str | None = None
    slot_bytes: int = 0
    token: str = ""


class Offer:
    """A segment a leader has created for one rank, named until the rank has answered."""

    def __init__(self, directory: Path, slot_bytes: int) -> None:
        self.slot_bytes = _aligned(slot_bytes)
        self.token = secrets.token_hex(_TOKEN_BYTES)
        self.path = directory / f"shardtrain-{secrets.token_hex(8)}"
        size = _segment_bytes(self.slot_bytes)
        self._accepted = False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # Reserved now, so that a full tmpfs refuses the offer here instead of killing a
            # process (SIGBUS) at its first write into a page that has no memory behind it.
            os.posix_fallocate(fd, 0, size)
            self._memory = mmap.mmap(fd, size)
        except OSError:
            self.path.unlink()
            raise
        finally:
            os.close(fd)
        self._memory[:len(self.token)] = self.token.encode()

    @property
    def message(self) -> SlotOffer:
        """What the rank is told of it."""
        return SlotOffer(str(self.path), self.slot_bytes, self.token)

    def accepted(self) -> SharedSlots:
        """The leader's end, once the rank has mapped the segment."""
        self._accepted = True
        return SharedSlots(self._memory, self.slot_bytes, direction=0)

    def withdraw(self) -> None:
        """Remove the name (the memory lives on while a process maps it), and unmap it here
        unless the rank took it."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if not self._accepted:
            self._memory.close()


def make_offer(directory: Path | None, slot_bytes: int) -> Offer | None:
    """A segment for one link, or None when shared memory is off or cannot be had."""
    if directory is None or slot_bytes <= 0:
        return None
    try:
        return Offer(directory, slot_bytes)
    except OSError as exc:
        log.info("no shared memory in %s for a rank's link (%s): TCP only", directory, exc)
        return None


def accept_offer(offer: SlotOffer) -> SharedSlots | None:
    """The rank's end of the segment ``offer`` names, or None when this process cannot map
    it: none offered, another host, another container."""
    path, slot_bytes, token = offer.path, offer.slot_bytes, offer.token
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size != _segment_bytes(slot_bytes):
            return None
        memory = mmap.mmap(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)
    if memory[:len(token)] != token.encode():  # a file of that name, but not the leader's
        memory.close()
        return None
    # Removed by whichever end comes first: a leader killed right after its offer leaves
    # nothing behind once its rank has mapped the segment.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return SharedSlots(memory, slot_bytes, direction=1)
