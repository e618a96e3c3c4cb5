"""Jobs: submission with idempotency keys, lookup, and the filtered, sorted listing of runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import FINISHED, Job, JobStatus
from db.queries.dml import affected_rows, insert_for
from db.queries.pagination import SortKey, cursor_datetime, cursor_number, paginate

JobOrder = Literal[
    "created", "-created", "final_val_loss", "-final_val_loss",
    "final_val_accuracy", "-final_val_accuracy",
]  # fmt: skip


def _metric_key(name: str) -> SortKey:
    column = getattr(Job, name.lstrip("-"))
    descending = name.startswith("-")
    return SortKey(name, column, descending=descending, parse=cursor_number, nullable=True)


_SORT_KEYS: dict[str, SortKey] = {
    "created": SortKey("created", Job.created_at, descending=False, parse=cursor_datetime),
    "-created": SortKey("-created", Job.created_at, descending=True, parse=cursor_datetime),
    "final_val_loss": _metric_key("final_val_loss"),
    "-final_val_loss": _metric_key("-final_val_loss"),
    "final_val_accuracy": _metric_key("final_val_accuracy"),
    "-final_val_accuracy": _metric_key("-final_val_accuracy"),
}


class IdempotencyConflict(Exception):
    """An idempotency key reused with a different request."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key {key!r} was used for another request (job {job_id})")
        self.key = key
        self.job_id = job_id


def create_job(
    session: Session,
    *,
    tenant_id: str,
    dataset_id: str,
    name: str,
    tags: dict[str, str],
    spec: dict[str, Any],
    total_steps: int,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[Job, bool]:
    """A new queued job, and True; or, for a repeated idempotency key, the first job and False.

    ``request_hash`` identifies the request body: the same key with another body raises
    ``IdempotencyConflict``, also when the two requests race.
    """
    if idempotency_key is not None:
        existing = _by_key(session, tenant_id=tenant_id, key=idempotency_key)
        if existing is not None:
            return _replay(existing, request_hash), False
    insert = insert_for(session, Job).values(
        tenant_id=tenant_id,
        dataset_id=dataset_id,
        name=name,
        tags=tags,
        spec=spec,
        total_steps=total_steps,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    statement = insert.on_conflict_do_nothing(
        index_elements=[Job.tenant_id, Job.idempotency_key]
    ).returning(Job)
    created = session.execute(statement).scalar_one_or_none()
    if created is not None:
        return created, True
    # Only a concurrent request with the same key can have won the insert.
    assert idempotency_key is not None
    winner = _by_key(session, tenant_id=tenant_id, key=idempotency_key)
    assert winner is not None
    return _replay(winner, request_hash), False


def _by_key(session: Session, *, tenant_id: str, key: str) -> Job | None:
    statement = select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
    return session.execute(statement).scalar_one_or_none()


def _replay(job: Job, request_hash: str | None) -> Job:
    if job.request_hash != request_hash:
        assert job.idempotency_key is not None
        raise IdempotencyConflict(job.idempotency_key, job.id)
    return job


def get_job(session: Session, *, tenant_id: str, job_id: str) -> Job | None:
    """The job, or None if it does not exist or belongs to another tenant."""
    statement = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
    return session.execute(statement).scalar_one_or_none()


def count_queued(session: Session, *, tenant_id: str) -> int:
    """How many of the tenant's jobs wait for a worker (for the queued-jobs quota)."""
    statement = select(func.count()).where(Job.tenant_id == tenant_id, Job.status == "queued")
    return session.execute(statement).scalar_one()


def jobs_starting_from(session: Session, *, tenant_id: str, job_id: str) -> list[Job]:
    """The tenant's queued or running jobs whose spec starts from ``job_id``'s weights."""
    statement = select(Job).where(Job.tenant_id == tenant_id,
                                  Job.status.in_(("queued", "running")),
                                  Job.spec["init"].as_string() == job_id)
    return list(session.execute(statement).scalars())


def delete_ended_job(session: Session, *, tenant_id: str, job_id: str) -> bool:
    """Delete the job if it has ended; its metrics, checkpoints and weights rows go with it
    (ON DELETE CASCADE), its blobs (``checkpoints.job_prefix``) are the caller's to delete
    once this is committed. False if it has not ended (or does not exist)."""
    statement = (delete(Job)
                 .where(Job.id == job_id, Job.tenant_id == tenant_id,
                        Job.status.in_(sorted(FINISHED)))
                 .execution_options(synchronize_session=False))
    return affected_rows(session, statement) == 1


def list_jobs(
    session: Session,
    *,
    tenant_id: str,
    status: JobStatus | None = None,
    name: str | None = None,
    tag: dict[str, str] | None = None,
    dataset_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    order: JobOrder = "-created",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """One page of the tenant's jobs that match every given filter, and the next page's cursor.

    ``tag`` matches jobs carrying all of its ``key: value`` pairs; ``created_after`` is
    inclusive and ``created_before`` exclusive. Orders on a final metric list the jobs without
    one (unfinished, failed) last. Raises ``InvalidCursor`` for a cursor of another order.
    """
    statement = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        statement = statement.where(Job.status == status)
    if name is not None:
        statement = statement.where(Job.name == name)
    for key, value in (tag or {}).items():
        # JSON path extraction that SQLAlchemy renders for each backend (->> or json_extract).
        statement = statement.where(Job.tags[key].as_string() == value)
    if dataset_id is not None:
        statement = statement.where(Job.dataset_id == dataset_id)
    if created_after is not None:
        statement = statement.where(Job.created_at >= created_after)
    if created_before is not None:
        statement = statement.where(Job.created_at < created_before)
    return paginate(
        session, statement, key=_SORT_KEYS[order], id_column=Job.id, limit=limit, cursor=cursor
    )
