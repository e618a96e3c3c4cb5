"""Links between a leader and one rank, over which every step's bytes travel.

Redis (or the in-memory plane) carries the handshake: a rank joins through the leader's
mailbox and learns its shards, the leader's address and a one-time secret. The steps then run
over a direct TCP connection per rank, framed by length: a 400 KB round trip costs about 0.1 ms
that way, against several through Redis, where each payload is copied in and out of the server
(bench/sync.py measures both). In the embedded default the ranks are threads of one process,
and their links are in-memory mailboxes.
"""

from __future__ import annotations

import hmac
import os
import secrets
import socket
import struct
import time
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

from worker.dataplane import DataPlane

_LENGTH = struct.Struct("<Q")
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
    def send(self, parts: Buffers) -> None: ...

    def receive(self, timeout: float) -> bytes | memoryview:
        """The next payload (a view valid until the next call); raises LinkClosed."""
        ...

    def close(self) -> None: ...


_CLOSED = b""  # what a closing mailbox link leaves for the other side


class MailboxLink:
    """A link as two mailboxes of a data plane: the in-process default."""

    def __init__(self, plane: DataPlane, outbox: str, inbox: str) -> None:
        self._plane, self._outbox, self._inbox = plane, outbox, inbox

    def send(self, parts: Buffers) -> None:
        self._plane.send(self._outbox, b"".join(parts))

    def receive(self, timeout: float) -> bytes:
        payload = self._plane.receive(self._inbox, timeout)
        if payload is None:
            raise LinkClosed(f"nothing in {self._inbox} for {timeout} s")
        if payload == _CLOSED:
            raise LinkClosed("the other side closed the link")
        return payload

    def close(self) -> None:
        self._plane.send(self._outbox, _CLOSED)
        self._plane.drop(self._inbox)


class SocketLink:
    """A TCP connection carrying length-prefixed payloads, received into one reused buffer."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buffer = bytearray(1 << 16)

    def send(self, parts: Buffers) -> None:
        # One gathering system call for the length, the header and the vectors, as they lie
        # in memory; a partial send resumes where it stopped.
        views = [memoryview(p).cast("B") for p in parts]  # lengths in bytes, whatever dtype
        pending = [memoryview(_LENGTH.pack(sum(len(v) for v in views))), *views]
        try:
            while pending:
                sent = self._sock.sendmsg(pending)
                while pending and sent >= len(pending[0]):
                    sent -= len(pending.pop(0))
                if sent:
                    pending[0] = pending[0][sent:]
        except OSError as exc:
            raise LinkClosed(str(exc)) from exc

    def _read_into(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            count = self._sock.recv_into(view[got:])
            if count == 0:
                raise LinkClosed("the other side closed the connection")
            got += count

    def _poll(self) -> None:
        """Wait up to ``POLL_S`` for the next payload without sleeping in the kernel."""
        self._sock.settimeout(0.0)
        deadline = time.perf_counter() + POLL_S
        while time.perf_counter() < deadline:
            try:
                self._sock.recv(1, socket.MSG_PEEK)
                return  # bytes, or the end of the stream: the read below takes either
            except BlockingIOError:
                os.sched_yield()  # a process with work on this core runs first
            except OSError:
                return

    def receive(self, timeout: float) -> memoryview:
        self._poll()
        self._sock.settimeout(timeout)
        try:
            head = memoryview(self._buffer)[:_LENGTH.size]
            self._read_into(head)
            (size,) = _LENGTH.unpack(head)
            if size > len(self._buffer):
                self._buffer = bytearray(size)
            body = memoryview(self._buffer)[:size]
            self._read_into(body)
            return body
        except (TimeoutError, OSError) as exc:
            raise LinkClosed(str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        self._sock.close()


def local_address(redis_url: str) -> str:
    """This host's address on the route to Redis: one that the other workers, which reach
    the same Redis, can reach too (a container's own address in compose, 127.0.0.1 here)."""
    parts = urlsplit(redis_url)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((parts.hostname or "127.0.0.1", parts.port or 6379))
        return str(probe.getsockname()[0])


class Listener:
    """The leader's socket that its ranks connect to, proving themselves by the secret that
    only the handshake through Redis told them."""

    def __init__(self, host: str) -> None:
        self._sock = socket.create_server((host, 0))
        self.address = f"{host}:{self._sock.getsockname()[1]}"
        self.secret = secrets.token_hex(16)

    def accept(self, ranks: set[int], timeout: float) -> dict[int, SocketLink]:
        """Links to those of ``ranks`` that connect within ``timeout`` s."""
        links: dict[int, SocketLink] = {}
        self._sock.settimeout(timeout)
        while len(links) < len(ranks):
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                break
            link = SocketLink(conn)
            try:
                rank, secret = bytes(link.receive(timeout)).decode().split(":", 1)
            except (LinkClosed, ValueError, UnicodeDecodeError):
                link.close()
                continue
            if hmac.compare_digest(secret, self.secret) and int(rank) in ranks:
                links[int(rank)] = link
            else:
                link.close()
        return links

    def close(self) -> None:
        self._sock.close()


def connect(address: str, rank: int, secret: str, timeout: float) -> SocketLink:
    host, port = address.rsplit(":", 1)
    link = SocketLink(socket.create_connection((host, int(port)), timeout=timeout))
    link.send([f"{rank}:{secret}".encode()])
    return link
