"""``/v1/jobs``: submit training jobs, follow them, list past runs, cancel, delete."""

from __future__ import annotations

import logging
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Response, status
from pydantic import AwareDatetime, BeforeValidator, StringConstraints

from api.deps import (
    CurrentTenant,
    DetachedJob,
    EnqueueDep,
    GateDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    TenantJob,
)
from api.errors import http_error
from api.responses import AUTHENTICATED, NO_SUCH_JOB, UNPARSABLE_BODY
from api.schemas.jobs import JobCreate, JobPublic, JobsPublic
from api.services.errors import InvalidInput, ServiceError
from api.services.job_views import job_view, job_views
from api.services.jobs import cancel_job, delete_job, submit_and_enqueue
from db.models import JobStatus
from db.queries.checkpoints import job_prefix
from db.queries.jobs import JobOrder, list_jobs

log = logging.getLogger(__name__)


def _iso_only(value: object) -> object:
    # pydantic would read "0.5" as a Unix time; the schema (and the client) say date-time.
    if isinstance(value, str) and value.replace(".", "", 1).lstrip("-").isdigit():
        raise ValueError("a date-time in ISO 8601 with a time zone, e.g. 2026-01-31T12:00:00Z")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]
# A tag filter in the schema too, so that clients (and fuzzers) know its form.
TagFilter = Annotated[str, StringConstraints(pattern=r"^[^:]+:")]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=AUTHENTICATED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={**UNPARSABLE_BODY,
               200: {"model": JobPublic, "description": "A replay of an Idempotency-Key"},
               429: {"description": "You have max_queued_jobs_per_tenant queued jobs"},
               503: {"description": "The broker did not take the job; nothing was stored"}},
)
def submit(
    spec: JobCreate,
    response: Response,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    enqueue: EnqueueDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(
        min_length=1, max_length=200,
        description="Retrying with the same key and body returns the first job",
    )] = None,
) -> JobPublic:
    """Queue a training job; every field is checked, a refused one is a 422 naming it."""
    try:
        submission = submit_and_enqueue(session=session, store=store, tenant_id=tenant.id,
                                        spec=spec, settings=settings, enqueue=enqueue,
                                        idempotency_key=idempotency_key)
    except ServiceError as error:
        raise http_error(error) from error
    if not submission.created:
        response.status_code = status.HTTP_200_OK
    return job_view(session=session, job=submission.job)


def _tags(values: list[str]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, tag_value = value.partition(":")
        if not sep or not key:
            raise http_error(InvalidInput(("query", "tag"),
                                          f"tag {value!r} is not of the form key:value"))
        tags[key] = tag_value
    return tags


@router.get("", response_model=JobsPublic)
def list_runs(
    session: SessionDep,
    tenant: CurrentTenant,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    name: str | None = None,
    tag: Annotated[list[TagFilter] | None, Query(
        description="key:value; repeat it to require several tags")] = None,
    dataset: str | None = None,
    created_after: Annotated[IsoDatetime | None, Query(description="inclusive")] = None,
    created_before: Annotated[IsoDatetime | None, Query(description="exclusive")] = None,
    order: JobOrder = "-created",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> JobsPublic:
    """Your jobs matching every filter given; on a final metric, jobs without one come last.
    Pass ``next_cursor`` back as ``cursor`` (with the same filters) for the next page."""
    jobs, next_cursor = list_jobs(
        session, tenant_id=tenant.id, status=status_, name=name, tag=_tags(tag or []),
        dataset_id=dataset, created_after=created_after, created_before=created_before,
        order=order, limit=limit, cursor=cursor)
    return JobsPublic(items=job_views(session=session, jobs=jobs), next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic,
            responses={404: {"description": "You have no such job"}})
def read_job(job: TenantJob, session: SessionDep) -> JobPublic:
    """Status, progress, latest, best and final metrics, error, timings and throughput."""
    return job_view(session=session, job=job)


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses={**NO_SUCH_JOB,
                        409: {"description": "The job has already succeeded or failed"}})
def cancel(job: TenantJob, session: SessionDep) -> JobPublic:
    """A queued job is cancelled at once, at its latest checkpoint; a running one stops at its
    next step, keeping its history and last checkpoint."""
    try:
        cancel_job(session=session, job=job)
    except ServiceError as error:
        raise http_error(error) from error
    session.commit()
    return job_view(session=session, job=job)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={**NO_SUCH_JOB,
                          409: {"description": "The job is queued or running (cancel it "
                                "first), or a queued or running job starts from it"}})
async def delete(job: DetachedJob, gate: GateDep, store: StoreDep) -> Response:
    """Delete an ended job: its history, checkpoints and weights go with it."""
    try:
        await gate.run(lambda session: delete_job(session=session, job=job))
    except ServiceError as error:
        raise http_error(error) from error
    try:  # committed: the job is gone whatever becomes of its bytes
        await to_thread.run_sync(store.delete_prefix, job_prefix(job.id))
    except Exception:
        log.warning("job %s is deleted but not all its blobs (%s) could be", job.id,
                    job_prefix(job.id), exc_info=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
