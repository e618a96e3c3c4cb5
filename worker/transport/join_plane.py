"""The join plane: Redis mailboxes through which a job's ranks join their leader.

A rank sends JOIN into the leader's mailbox and receives its ASSIGN in its own; a payload is
a message of ``worker.transport.messages``. The steps then run over links, not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from worker.redis_client import redis_client

# Mailboxes expire on their own, so a job whose leader vanished leaves nothing behind for long.
MAILBOX_TTL_S = 3600
# Waits are cut into pieces shorter than the client's socket timeout, which would otherwise
# end a longer BLPOP with an error instead of an empty answer.
BLPOP_SLICE_S = 2.0


@dataclass(frozen=True)
class Mailboxes:
    """The names of one attempt's mailboxes."""

    job_id: str
    attempt: int

    @property
    def leader(self) -> str:
        return f"shardtrain:{self.job_id}:{self.attempt}:leader"

    def rank(self, rank: int) -> str:
        return f"shardtrain:{self.job_id}:{self.attempt}:rank{rank}"

    @property
    def joining_closed(self) -> str:
        return f"shardtrain:{self.job_id}:{self.attempt}:joining-closed"


class JoinPlane:
    """Mailboxes of raw bytes as Redis lists (RPUSH, BLPOP), and flags beside them."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def send(self, mailbox: str, payload: bytes) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(mailbox, payload)
        pipe.expire(mailbox, MAILBOX_TTL_S)
        pipe.execute()

    def receive(self, mailbox: str, timeout: float) -> bytes | None:
        """The oldest payload in ``mailbox``, waiting up to ``timeout`` s; None if none came."""
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
        """Set a flag that expires with the mailboxes (e.g. a closed join window)."""
        self._redis.set(name, b"1", ex=MAILBOX_TTL_S)

    def is_marked(self, name: str) -> bool:
        return bool(self._redis.exists(name))


def join_plane(redis_url: str) -> JoinPlane:
    """The join plane on this process's client for ``redis_url``."""
    return JoinPlane(redis_client(redis_url))
