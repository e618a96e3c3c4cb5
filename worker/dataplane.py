"""The data plane: mailboxes of raw bytes between the ranks of a job.

A rank receives from its own mailbox and sends into another's; a payload is a small binary
header and numpy buffers as they lie in memory (never JSON lists of floats, never pickle).
Redis lists in deployment (RPUSH / BLPOP); the same operations in memory for the embedded
default, where the ranks are threads of one process.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from functools import lru_cache
from typing import Protocol

import redis

# Mailboxes expire on their own, so a job whose leader vanished leaves nothing behind for long.
MAILBOX_TTL_S = 3600
BLPOP_SLICE_S = 2.0


class DataPlane(Protocol):
    def send(self, mailbox: str, payload: bytes) -> None: ...

    def receive(self, mailbox: str, timeout: float) -> bytes | None:
        """The oldest payload in ``mailbox``, waiting up to ``timeout`` s; None if none came."""
        ...

    def drop(self, *mailboxes: str) -> None: ...

    def mark(self, name: str) -> None:
        """Set a flag that expires with the mailboxes (e.g. a closed join window)."""
        ...

    def is_marked(self, name: str) -> bool: ...


class MemoryDataPlane:
    def __init__(self) -> None:
        self._boxes: defaultdict[str, deque[bytes]] = defaultdict(deque)
        self._changed = threading.Condition()
        self._marks: set[str] = set()

    def send(self, mailbox: str, payload: bytes) -> None:
        with self._changed:
            self._boxes[mailbox].append(payload)
            self._changed.notify_all()

    def receive(self, mailbox: str, timeout: float) -> bytes | None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._boxes[mailbox], timeout):
                return None
            return self._boxes[mailbox].popleft()

    def drop(self, *mailboxes: str) -> None:
        with self._changed:
            for mailbox in mailboxes:
                self._boxes.pop(mailbox, None)

    def mark(self, name: str) -> None:
        self._marks.add(name)

    def is_marked(self, name: str) -> bool:
        return name in self._marks


class RedisDataPlane:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> RedisDataPlane:
        # hiredis (a dependency) parses multi-megabyte replies several times faster than the
        # pure-Python parser; redis-py picks it up by itself.
        return cls(redis.Redis.from_url(url, socket_keepalive=True))

    def send(self, mailbox: str, payload: bytes) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(mailbox, payload)
        pipe.expire(mailbox, MAILBOX_TTL_S)
        pipe.execute()

    def receive(self, mailbox: str, timeout: float) -> bytes | None:
        # Waits in pieces shorter than redis-py's socket timeout (5 s by default), which would
        # otherwise end a longer BLPOP with an error instead of an empty answer.
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            reply = self._redis.blpop([mailbox], timeout=min(max(left, 0.01), BLPOP_SLICE_S))
            if reply is not None:
                return bytes(reply[1])  # type: ignore[arg-type]
            if left <= BLPOP_SLICE_S:
                return None

    def drop(self, *mailboxes: str) -> None:
        if mailboxes:
            self._redis.delete(*mailboxes)

    def mark(self, name: str) -> None:
        self._redis.set(name, b"1", ex=MAILBOX_TTL_S)

    def is_marked(self, name: str) -> bool:
        return bool(self._redis.exists(name))


_memory = MemoryDataPlane()


@lru_cache(maxsize=4)
def data_plane(redis_url: str | None) -> DataPlane:
    """Redis at ``redis_url``, or this process's in-memory plane when there is none; one per
    process and URL, so that each job reuses the pooled connections instead of opening its own
    (about 2 ms each, on the leader's and each rank's way to the first step)."""
    return RedisDataPlane.from_url(redis_url) if redis_url else _memory
