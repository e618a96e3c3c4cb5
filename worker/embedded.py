"""A Celery worker in a thread of this process, for the embedded default (``shardtrain serve``).

It consumes the in-process ``memory://`` broker that the API's client publishes to, and runs
the very tasks a ``celery worker`` process runs.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from worker.app import celery_app


def _announce_ready(consumer: Any) -> None:
    # As a `celery worker` process does (a bare WorkController does not), so that what starts
    # with a worker starts here too: the watchdog that fails or re-sends stalled jobs.
    worker_ready.send(sender=consumer)


class EmbeddedWorker:
    def __init__(self, app: Celery = celery_app, concurrency: int = 1) -> None:
        # Solo pool: tasks run in the worker's own thread. No heartbeat, mingle or gossip:
        # there are no other workers to talk to in one process.
        self._controller = app.WorkController(
            pool_cls="solo", concurrency=concurrency, without_heartbeat=True,
            without_mingle=True, without_gossip=True, loglevel="WARNING",
            ready_callback=_announce_ready)
        self._thread = threading.Thread(target=self._controller.start, name="shardtrain-worker",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._controller.stop(in_sighandler=False)
        self._thread.join(timeout)
