"""Service-wide figures for operators (Prometheus): jobs by status, the running jobs' rates.

Unlike the other queries these span every tenant: they feed ``/metrics``, not a client.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Job


def jobs_by_status(session: Session) -> dict[str, int]:
    """How many jobs are in each status; statuses without jobs are absent."""
    statement = select(Job.status, func.count()).group_by(Job.status)
    return {status: count for status, count in session.execute(statement)}


def running_rates(session: Session) -> tuple[float, float]:
    """``(samples per second, steps per second)`` summed over the running jobs, as their
    leaders last wrote them; a step counts as a full batch (an epoch's last may be shorter)."""
    statement = select(Job.samples_per_s, Job.spec).where(Job.status == "running")
    samples = steps = 0.0
    for samples_per_s, spec in session.execute(statement):
        if samples_per_s is None:  # not one write yet
            continue
        samples += samples_per_s
        steps += samples_per_s / spec["batch_size"]
    return samples, steps
