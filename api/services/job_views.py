"""Jobs as clients see them: the job row with its latest metrics."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.schemas.jobs import JobPublic
from db.base import utc_now
from db.models import Job
from db.queries.metrics import latest_metrics


def job_views(*, session: Session, jobs: list[Job]) -> list[JobPublic]:
    """Public views of ``jobs``, their latest metrics read in one go (not one query per job)."""
    latest = latest_metrics(session, job_ids=[job.id for job in jobs])
    now = utc_now()
    return [JobPublic.of(job, latest=latest.get(job.id), now=now) for job in jobs]


def job_view(*, session: Session, job: Job) -> JobPublic:
    return job_views(session=session, jobs=[job])[0]

