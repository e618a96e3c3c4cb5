"""A link between a leader and one rank: framed payloads over one TCP connection.

A frame is a 16-byte header, then the payload. The header holds the payload's length and how
many slot payloads its sender is done with. A 400 KB round trip costs about 0.1 ms this way,
against several through Redis, which copies each payload in and out of the server
(bench/sync.py measures both). When both ends run on one host, a payload goes through shared
slots instead, and the frame carries its length alone (``worker.transport.slots``). How a link
is made: ``worker.transport.handshake``.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Sequence
from typing import Protocol

from worker.transport.slots import SLOTS, SharedSlots

# A frame's header: the payload's length (with _IN_SLOT set, the payload waits in the
# receiver's shared slot, not in the frame), and how many slot payloads its sender is done with.
_HEADER = struct.Struct("<QQ")
_IN_SLOT = 1 << 63
# How long a receive polls before it blocks. A rank and its leader wait for each other at every
# step, for a fraction of a millisecond; waking from a blocking read costs a scheduler round
# trip on each side, which on a virtual machine cost the reference job of bench.service about
# 7% of its time on 2 ranks. Polling yields the core at each turn, so on a host with more
# processes than cores it takes time from no one that has work.
POLL_S = 0.002

Buffers = Sequence[bytes | memoryview]  # one payload in pieces, sent without joining them


class LinkClosed(Exception):
    """The other side went away or stayed silent past the timeout."""


class Link(Protocol):
    """One end of a link. Each call raises LinkClosed when the other side went away or
    stayed silent past its timeout."""

    def send(self, parts: Buffers) -> None:
        """Send ``parts`` as one payload."""
        ...

    def receive(self, timeout: float) -> bytes | memoryview:
        """The next payload, a view valid until the next call."""
        ...

    def exchange(self, parts: Buffers, timeout: float) -> bytes | memoryview:
        """Send ``parts`` and receive the next payload, as ``send`` then ``receive`` would,
        but without waiting for the other side to read first (it may be sending too)."""
        ...

    def close(self) -> None:
        """End the link: the other side's next call raises LinkClosed."""
        ...


class SocketLink:
    """A TCP connection carrying length-prefixed payloads, received into one reused buffer.

    The socket never blocks: a send, a receive or an exchange (both at once) moves bytes as
    the socket takes and gives them, and waits in ``select`` for at most its timeout (a send
    at most ``timeout``, given with the link).

    With shared slots (``share``), a payload that fits is copied into the next outgoing slot
    when the peer is done with what that slot held, and the frame carries its length alone."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock, self._timeout = sock, timeout
        # The payload lands right after its header, 16 bytes into the buffer, so that the
        # vectors that messages align to 8 bytes within it are aligned in memory too.
        self._buffer = bytearray(1 << 16)
        self._slots: SharedSlots | None = None
        # Slot payloads written and read by this end, those of the read that it is done with,
        # and those of the written that the peer said it is done with.
        self._written = self._read = self._released = self._peer_released = 0
        # The incoming frame of the call in progress: bytes read, bytes wanted (the header's,
        # then its payload's too), and the length of a payload waiting in a slot instead.
        self._filled = self._need = 0
        self._in_slot: int | None = None

    @property
    def shared(self) -> bool:
        return self._slots is not None

    def share(self, slots: SharedSlots) -> None:
        """Send payloads through ``slots`` from now on, where they fit (the peer does too)."""
        self._slots = slots

    def send(self, parts: Buffers) -> None:
        self._move(parts, False, self._timeout)

    def receive(self, timeout: float) -> memoryview:
        payload = self._move(None, True, timeout)
        assert payload is not None
        return payload

    def exchange(self, parts: Buffers, timeout: float) -> memoryview:
        """Send ``parts`` and receive the peer's next payload, moving both at once: two sides
        that each send before they receive never wait for each other to read, however far
        their payloads exceed what the sockets buffer."""
        payload = self._move(parts, True, timeout)
        assert payload is not None
        return payload

    def _framed(self, parts: Buffers) -> list[memoryview]:
        """The header, then the parts as bytes (whatever their item size), for one gathering
        system call that sends them as they lie in memory; or the header alone, the parts
        copied into a slot."""
        views = [memoryview(p).cast("B") for p in parts]
        length = sum(len(v) for v in views)
        slots = self._slots
        # The slot's last payload is the one written SLOTS payloads ago.
        if (slots is not None and length <= slots.slot_bytes
                and self._written - SLOTS < self._peer_released):
            slots.write(self._written, views)
            self._written += 1
            return [memoryview(_HEADER.pack(_IN_SLOT | length, self._released))]
        return [memoryview(_HEADER.pack(length, self._released)), *views]

    def _move(self, parts: Buffers | None, receive: bool, timeout: float
              ) -> memoryview | None:
        """Send ``parts`` whole and, if ``receive``, read one payload; a view of it, valid
        until the next call. Raises LinkClosed."""
        self._released = self._read  # a call ends the view the last one returned
        out = self._framed(parts) if parts is not None else []
        self._filled, self._need, self._in_slot = 0, (_HEADER.size if receive else 0), None
        now = time.perf_counter()
        deadline, polling_until = now + timeout, now + POLL_S
        try:
            while out or self._filled < self._need:
                moved = self._write(out) if out else False
                if self._filled < self._need:
                    moved = self._read_frame() or moved
                if moved:
                    continue
                now = time.perf_counter()
                if now >= deadline:
                    raise LinkClosed(f"not done within {timeout} s")
                if not out and now < polling_until:
                    os.sched_yield()  # a process with work on this core runs first
                    continue
                select.select([self._sock] if self._filled < self._need else [],
                              [self._sock] if out else [], [], deadline - now)
        except OSError as exc:
            raise LinkClosed(str(exc) or type(exc).__name__) from exc
        if not receive:
            return None
        if self._in_slot is not None:
            assert self._slots is not None
            self._read += 1
            return self._slots.read(self._read - 1, self._in_slot)
        return memoryview(self._buffer)[_HEADER.size:self._need]

    def _read_frame(self) -> bool:
        """Read what has come of the incoming frame, its header first; True if any came."""
        count = self._receive_into(self._filled, self._need)
        self._filled += count
        if count and self._filled == self._need == _HEADER.size:
            self._on_header()
        return count > 0

    def _on_header(self) -> None:
        """Take the header just read: what the peer is done with, and where the payload is
        (in a slot, or after the header in a buffer grown to hold it)."""
        length, self._peer_released = _HEADER.unpack_from(self._buffer)
        if length & _IN_SLOT:
            if self._slots is None:
                raise LinkClosed("a payload in shared memory on a link that has none")
            self._in_slot = length & ~_IN_SLOT
            return
        self._need += length
        if self._need > len(self._buffer):
            grown = bytearray(self._need)
            grown[:self._filled] = self._buffer[:self._filled]
            self._buffer = grown

    def _write(self, out: list[memoryview]) -> bool:
        """Send what the socket takes of ``out`` now, dropping what went; True if any did."""
        try:
            sent = self._sock.sendmsg(out)
        except BlockingIOError:
            return False
        while out and sent >= len(out[0]):
            sent -= len(out.pop(0))
        if sent:
            out[0] = out[0][sent:]
        return True

    def _receive_into(self, filled: int, need: int) -> int:
        """Bytes read now into the frame's buffer between ``filled`` and ``need``."""
        try:
            count = self._sock.recv_into(memoryview(self._buffer)[filled:need])
        except BlockingIOError:
            return 0
        if count == 0:
            raise LinkClosed("the other side closed the connection")
        return count

    def close(self) -> None:
        self._sock.close()
        if self._slots is not None:
            self._slots.close()

