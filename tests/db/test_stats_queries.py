"""Service-wide figures for /metrics: jobs by status, the running jobs' rates, a read limit."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from db.models import Job
from db.queries.metrics import read_metrics, upsert_metrics
from db.queries.stats import jobs_by_status, running_rates
from tests.utils.jobs import claimed


def test_jobs_by_status_and_the_rates_of_running_jobs(
    session: Session, add_job: Callable[..., Job]
) -> None:
    assert jobs_by_status(session) == {} and running_rates(session) == (0.0, 0.0)
    add_job()
    fast, slow, starting, done = (add_job(spec={"epochs": 1, "batch_size": batch})
                                  for batch in (10, 4, 8, 8))
    for job in (fast, slow, starting, done):
        claimed(job)
    fast.samples_per_s, slow.samples_per_s = 1000.0, 20.0  # starting has not written yet
    done.samples_per_s = 500.0
    done.mark_cancelled()
    session.flush()
    assert jobs_by_status(session) == {"queued": 1, "running": 3, "cancelled": 1}
    assert running_rates(session) == (1020.0, 1000.0 / 10 + 20.0 / 4)


def test_read_metrics_with_a_limit_keeps_the_first_steps_after_since_step(
    session: Session, add_job: Callable[..., Job]
) -> None:
    job = add_job()
    upsert_metrics(session, job_id=job.id, rows=[(s, 1, 1.0, None, None) for s in range(1, 11)])
    assert read_metrics(session, job_id=job.id, since_step=3, limit=4)["step"] == [4, 5, 6, 7]
    assert read_metrics(session, job_id=job.id, limit=2)["step"] == [1, 2]
