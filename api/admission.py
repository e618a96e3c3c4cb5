"""Admission to the database: no more requests hold a session than the pool has connections.

FastAPI runs sync dependencies and handlers in a thread pool, one hop each, and a request's
session keeps its connection from one hop to the next. With more requests than connections,
every thread could block in the pool, waiting for a connection that belongs to a request
which itself waits for a thread. So a request takes a slot (one per connection) on the event
loop before it opens a session: a request holding a slot always finds a connection, and no
thread ever waits for one. Past capacity, requests wait up to ``db_queue_s`` for a slot, then
are answered 503 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
from anyio import to_thread
from sqlalchemy.orm import Session

from db.engine import SessionFactory

T = TypeVar("T")

# What an overloaded API tells a client to wait: long enough for a burst to drain.
OVERLOAD_RETRY_AFTER_S = 1


class Overloaded(Exception):
    """No database slot came free within the wait."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"the service is at capacity: no database connection came free "
                         f"within {wait_s:g} s; retry shortly")


class DatabaseGate:
    """``slots`` sessions at once on ``factory``'s pool; a request waits ``wait_s`` for one."""

    def __init__(self, factory: SessionFactory, slots: int, wait_s: float) -> None:
        self.factory, self.slots, self.wait_s = factory, slots, wait_s
        self._semaphore = anyio.Semaphore(slots)
        self.rejected = 0

    @property
    def in_use(self) -> int:
        return self.slots - self._semaphore.value

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the block; raises ``Overloaded`` after ``wait_s`` without one."""
        acquired = False
        with anyio.move_on_after(self.wait_s):
            await self._semaphore.acquire()
            acquired = True
        if not acquired:
            self.rejected += 1
            raise Overloaded(self.wait_s)
        try:
            yield
        finally:
            self._semaphore.release()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A session in a slot: committed if the block succeeds, rolled back if it raises,
        and closed in either case (in a thread, and shielded: a cancelled request still
        returns its connection)."""
        async with self.slot():
            session = self.factory()
            try:
                yield session
                with anyio.CancelScope(shield=True):
                    await to_thread.run_sync(session.commit)
            finally:
                with anyio.CancelScope(shield=True):
                    await to_thread.run_sync(session.close)

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in one thread hop, in a slot, committed afterwards."""
        async with self.slot():
            def in_thread() -> T:
                with self.factory() as session:
                    result = work(session)
                    session.commit()
                    return result

            return await to_thread.run_sync(in_thread)
