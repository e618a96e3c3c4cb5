"""Celery tasks: thin wrappers that take ids and call the logic in ``worker.runner``."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from db.logs import job_context
from worker.app import celery_app
from worker.leading import TRAIN_RANK
from worker.rank_runner import run_rank
from worker.runner import run_job

TRAIN_JOB = "shardtrain.train_job"


# A database that is briefly unreachable is retried with backoff; the retry resumes the job
# from its last checkpoint. Domain errors (bad data, divergence) are recorded on the job by
# run_job and never retried.
@celery_app.task(name=TRAIN_JOB, autoretry_for=(OperationalError,), retry_backoff=True,
                 retry_backoff_max=60, max_retries=20)
def train_job(job_id: str) -> str:
    with job_context(job_id, rank=0):
        return run_job(job_id)


# A rank is acknowledged on receipt and never retried: if its worker dies, the leader drops it
# and computes its shards, so a redelivered rank would find no place in the plan.
@celery_app.task(name=TRAIN_RANK, acks_late=False, ignore_result=True)
def train_rank(job_id: str, attempt: int, rank: int) -> str:
    with job_context(job_id, rank=rank):
        return run_rank(job_id, attempt, rank)
