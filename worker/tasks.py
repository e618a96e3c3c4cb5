"""Celery tasks: thin wrappers that take ids and call the leader's or a rank's logic."""

from __future__ import annotations

from celery import Task

from db.logs import job_context
from db.task_names import TRAIN_JOB, TRAIN_RANK
from worker import presence, shutdown, watchdog  # noqa: F401  (their signal handlers)
from worker.app import celery_app
from worker.leader import DatabaseUnavailable, run_job
from worker.rank import run_rank

__all__ = ["train_job", "train_rank"]

RETRY_BACKOFF_MAX_S = 60


# A database that is briefly unreachable is retried with backoff; the retry keeps the lease of
# the attempt it interrupts, so it resumes the job from its last checkpoint at once. Domain
# errors (bad data, divergence) are recorded on the job by run_job and never retried.
@celery_app.task(bind=True, name=TRAIN_JOB, max_retries=20)
def train_job(self: Task, job_id: str, lease: int | None = None) -> str:
    with job_context(job_id, rank=0):
        try:
            return run_job(job_id, lease=lease)
        except DatabaseUnavailable as exc:
            countdown = min(2 ** self.request.retries, RETRY_BACKOFF_MAX_S)
            raise self.retry(args=[job_id], kwargs={"lease": exc.lease}, countdown=countdown,
                             exc=exc) from exc


# A rank is acknowledged on receipt and never retried: if its worker dies, the leader drops it
# and computes its shards, so a redelivered rank would find no place in the plan.
@celery_app.task(name=TRAIN_RANK, acks_late=False, ignore_result=True)
def train_rank(job_id: str, attempt: int, rank: int) -> str:
    with job_context(job_id, rank=rank):
        return run_rank(job_id, attempt, rank)
