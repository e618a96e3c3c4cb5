"""The names of the workers' Celery tasks, shared by the API (which sends jobs by name only)
and the workers (which register and send them)."""

TRAIN_JOB = "shardtrain.train_job"
"""Lead a job: ``args=[job_id]``, and ``kwargs={"lease": attempt}`` on a retry."""
TRAIN_RANK = "shardtrain.train_rank"
"""Serve as a rank of a leader's attempt: ``args=[job_id, attempt, rank]``."""
