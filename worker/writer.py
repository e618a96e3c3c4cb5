"""The leader's progress writes, done on a thread of their own while the next steps train.

A batch of metrics (and at times a checkpoint) costs the database a few round trips and
milliseconds; written in the training loop, that time stalls the leader and every rank
waiting for it at the next step. The writer takes one write at a time: a write submitted while
the previous one runs waits for it, so they commit in order, at most one is in flight, and what
the loop hands over (a ``Batch``, a checkpoint's bytes) is a snapshot that nothing changes
after. A write's error (``LeaseLost``, an outage) is raised in the loop at its next call.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

Write = Callable[[], bool]
"""One transaction; True when it read that a cancel of the job has been requested."""


class Writer:
    """Runs writes in order on one thread; use it as a context manager, which waits for the
    write in flight (never left half done) on the way out."""

    def __init__(self, job_id: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1,
                                        thread_name_prefix=f"shardtrain-writes-{job_id[:8]}")
        self._pending: Future[bool] | None = None
        self.cancel_requested = False  # as read by the writes that have ended

    def submit(self, write: Write) -> None:
        """Start ``write`` once the one in flight, if any, has ended."""
        self.wait()
        self._pending = self._pool.submit(write)

    def poll(self) -> None:
        """Take the outcome of a write that has ended (no wait)."""
        if self._pending is not None and self._pending.done():
            self.wait()

    def wait(self) -> None:
        """Until no write is in flight; raises the error of the one that was, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self.cancel_requested |= pending.result()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # A write that failed while the loop was leaving for another reason is not raised:
        # the reason the loop left is what the caller handles.
        self._pool.shutdown(wait=True)
