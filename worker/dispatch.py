"""Sending the workers' own tasks by name: a leader launches its ranks, and a job handed
back (by its leader or by the watchdog) goes to the queue again."""

from __future__ import annotations

from collections.abc import Callable

from db.task_names import TRAIN_JOB, TRAIN_RANK

Requeue = Callable[[str], None]
"""Sends job ``job_id`` to the workers again."""
RankLauncher = Callable[[str, int, int], None]
"""Starts rank ``rank`` of attempt ``attempt`` of job ``job_id``."""


def send(name: str, *args: object) -> None:
    """Send task ``name`` with ``args`` through this process's Celery app."""
    # Imported here: the app reads the settings once, when a task is first sent.
    from worker.app import celery_app

    celery_app.send_task(name, args=list(args))


def requeue_job(job_id: str) -> None:
    send(TRAIN_JOB, job_id)


def launch_rank(job_id: str, attempt: int, rank: int) -> None:
    send(TRAIN_RANK, job_id, attempt, rank)
