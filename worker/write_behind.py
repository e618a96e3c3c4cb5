"""The leader's periodic writes, done in a thread of their own while training goes on.

A flush (metrics rows, progress, best weights, now and then a checkpoint) costs a few
milliseconds, and a commit waits for PostgreSQL to sync its log, which on a shared disk
sometimes takes 100 ms: written from the training loop, every rank would wait that long. The
database driver waits without the GIL, so a thread takes the whole wait off the loop. One write
is in flight at a time; what the loop records meanwhile goes into the next one, so the writes
never queue up. Where steps are far shorter than writing their rows, the loop waits for the
writer once a backlog has built up, as it would for a write of its own. A write's outcome (its
return value or its exception) reaches the loop at the next step it looks, or when it drains
the writer before its own final writes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait


class WriteBehind:
    """Runs callables returning a flag (e.g. "the job was cancelled"), one at a time."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shardtrain-writes")
        self._pending: Future[bool] | None = None

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def submit(self, write: Callable[[], bool]) -> None:
        if self.busy:
            raise RuntimeError("a write is still in flight")
        # The log context (job id, rank) of the caller goes with the write.
        self._pending = self._pool.submit(contextvars.copy_context().run, write)

    def outcome(self) -> bool:
        """What the last write returned, once it has ended (False while it runs, or when
        there is none); its exception is raised here."""
        if self._pending is None or not self._pending.done():
            return False
        return self.drain()

    def wait(self) -> None:
        """Wait for the write in flight to end, leaving its outcome to ``outcome``."""
        if self._pending is not None:
            wait([self._pending])

    def drain(self) -> bool:
        """Wait for the write in flight and return (or raise) its outcome."""
        pending, self._pending = self._pending, None
        return pending.result() if pending is not None else False

    def close(self) -> None:
        """Wait for the write in flight, ignoring its outcome, and stop the thread."""
        self._pool.shutdown(wait=True)
