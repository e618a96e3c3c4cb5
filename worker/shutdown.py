"""A worker asked to stop hands its jobs back at once, instead of finishing them first.

Celery's warm shutdown (SIGTERM) waits for the running tasks, and a job may run for hours. So
a worker that starts shutting down sets ``SHUTTING_DOWN`` and forwards it to its pool
processes (which run the tasks) as SIGUSR2. A leader checks the flag between steps (with
local SGD, between rounds): it writes a checkpoint, releases its lease and re-sends the job
(``worker.leader``), which another worker resumes at once. A rank leaves, and its leader plans
its shards over the ranks left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from types import FrameType

import billiard.process
from celery.signals import worker_process_init, worker_shutting_down

log = logging.getLogger(__name__)

SHUTTING_DOWN = threading.Event()
"""Set in a worker process (or pool process) that is shutting down."""

# Unused by Celery and billiard in pool processes (SIGUSR1 is billiard's soft time limit).
FORWARDED_SIGNAL = signal.SIGUSR2


def _on_forwarded(_signum: int, _frame: FrameType | None) -> None:
    SHUTTING_DOWN.set()


@worker_process_init.connect
def _listen_in_pool_process(**_: object) -> None:
    signal.signal(FORWARDED_SIGNAL, _on_forwarded)


@worker_shutting_down.connect
def _hand_back_running_jobs(**_: object) -> None:
    # The solo and thread pools (embedded mode) run tasks in this process: the flag suffices.
    SHUTTING_DOWN.set()
    for child in billiard.process.active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, FORWARDED_SIGNAL)
    log.info("shutting down: running jobs are handed back to the queue")
