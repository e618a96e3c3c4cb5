"""Celery tasks: thin wrappers that take ids and call the logic in ``worker.runner``."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from worker.app import celery_app
from worker.runner import run_job

TRAIN_JOB = "shardtrain.train_job"


# A database that is briefly unreachable is retried with backoff; the retry resumes the job
# from its last checkpoint. Domain errors (bad data, divergence) are recorded on the job by
# run_job and never retried.
@celery_app.task(name=TRAIN_JOB, autoretry_for=(OperationalError,), retry_backoff=True,
                 retry_backoff_max=60, max_retries=20)
def train_job(job_id: str) -> str:
    return run_job(job_id)
