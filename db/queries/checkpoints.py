"""Checkpoints (training state by step) and the final and best weights of a job.

Most take a job id only: callers resolve the job through ``get_job``, which checks the tenant.
The upserts bypass the ORM's identity map, so the reads refresh (``populate_existing``) any
object that an earlier read in the same session loaded.

A job that succeeded keeps no checkpoint of its last step: its final weights stand for it
(``save_final``, ``state_at``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.base import utc_now
from db.models import Checkpoint, Job, Weights, WeightsKind
from db.queries.dml import affected_rows, insert_for


def save_checkpoint(session: Session, *, job_id: str, step: int, state: bytes) -> None:
    """Store the state after ``step``, replacing one saved for that step before a crash."""
    insert = insert_for(session, Checkpoint).values(
        job_id=job_id, step=step, state=state, created_at=utc_now()
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[Checkpoint.job_id, Checkpoint.step],
            set_={"state": insert.excluded.state, "created_at": insert.excluded.created_at},
        )
    )


def latest_checkpoint(session: Session, *, job_id: str) -> Checkpoint | None:
    """The checkpoint to resume from: the one with the highest step."""
    statement = (
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return session.execute(statement).scalar_one_or_none()


def get_checkpoint(session: Session, *, job_id: str, step: int) -> Checkpoint | None:
    return session.get(Checkpoint, (job_id, step), populate_existing=True)


def prune_checkpoints(session: Session, *, job_id: str, keep: int) -> int:
    """Delete all but the ``keep`` latest checkpoints and step 0; return how many went.

    Step 0 (the initial weights) is never deleted, whatever ``keep`` is.
    """
    if keep < 0:
        raise ValueError(f"keep must be at least 0, got {keep}")
    latest = (
        select(Checkpoint.step)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc())
        .limit(keep)
    )
    statement = delete(Checkpoint).where(
        Checkpoint.job_id == job_id, Checkpoint.step != 0, Checkpoint.step.not_in(latest)
    )
    return affected_rows(session, statement)


def save_weights(
    session: Session, *, job_id: str, kind: WeightsKind, step: int, data: bytes
) -> None:
    """Store the job's ``kind`` weights (an ``.npz``), replacing earlier ones of that kind."""
    insert = insert_for(session, Weights).values(
        job_id=job_id, kind=kind, step=step, data=data, created_at=utc_now()
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[Weights.job_id, Weights.kind],
            set_={
                "step": insert.excluded.step,
                "data": insert.excluded.data,
                "created_at": insert.excluded.created_at,
            },
        )
    )


def get_weights(session: Session, *, job_id: str, kind: WeightsKind) -> Weights | None:
    return session.get(Weights, (job_id, kind), populate_existing=True)


def save_final(session: Session, *, job_id: str, step: int, data: bytes) -> None:
    """Store the final weights (an ``.npz``) of a job that succeeded at ``step``. They stand
    for its checkpoint at that step, which is not written: the job never resumes, and
    ``state_at`` gives these weights for that step."""
    save_weights(session, job_id=job_id, kind="final", step=step, data=data)


@dataclass(frozen=True)
class StoredState:
    """A job's state at ``step`` as stored: a checkpoint's training state, or the final
    weights (``is_weights``) of a job that succeeded at that step."""

    step: int
    data: bytes
    is_weights: bool


def state_at(session: Session, *, job: Job, step: int | None) -> StoredState | None:
    """The job's state at ``step`` (None: its latest), or None where none is kept."""
    if job.status == "succeeded" and step in (None, job.step):
        final = get_weights(session, job_id=job.id, kind="final")
        if final is not None:
            return StoredState(final.step, final.data, is_weights=True)
    if step is None:
        found = latest_checkpoint(session, job_id=job.id)
    else:
        # Beyond the job's steps there is none, and the database could not even bind a
        # number past its integers.
        found = (get_checkpoint(session, job_id=job.id, step=step)
                 if step <= job.total_steps else None)
    return StoredState(found.step, found.state, is_weights=False) if found else None
