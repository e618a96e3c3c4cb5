"""Checkpoints (training state by step) and the final and best weights of a job.

Their bytes (.npz files) are blobs under ``jobs/<id>/`` in the blob store; SQL keeps which
exist, their steps and sizes. A blob is written before its row, so a row always has its
bytes; a pruned checkpoint's blob is deleted by the caller once the row's deletion is
committed (``prune_checkpoints`` returns its key).

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
from db.blobs import BlobStore
from db.models import Checkpoint, Job, Weights, WeightsKind
from db.queries.dml import insert_for


def job_prefix(job_id: str) -> str:
    """Where every blob of a job lives: deleting the job deletes the prefix."""
    return f"jobs/{job_id}/"


def checkpoint_key(job_id: str, step: int) -> str:
    return f"jobs/{job_id}/checkpoints/{step:012d}.npz"


def weights_key(job_id: str, kind: WeightsKind) -> str:
    return f"jobs/{job_id}/weights/{kind}.npz"


def save_checkpoint(session: Session, store: BlobStore, *, job_id: str, step: int,
                    state: bytes) -> None:
    """Store the state after ``step``, replacing one saved for that step before a crash."""
    store.put(checkpoint_key(job_id, step), state)
    insert = insert_for(session, Checkpoint).values(
        job_id=job_id, step=step, size_bytes=len(state), created_at=utc_now()
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[Checkpoint.job_id, Checkpoint.step],
            set_={"size_bytes": insert.excluded.size_bytes,
                  "created_at": insert.excluded.created_at},
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


def prune_checkpoints(session: Session, *, job_id: str, keep: int) -> list[str]:
    """Delete the rows of all but the ``keep`` latest checkpoints and step 0; the keys of
    their blobs, for the caller to delete once this is committed.

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
    ).returning(Checkpoint.step)
    return [checkpoint_key(job_id, step) for step in session.execute(statement).scalars()]


def save_weights(session: Session, store: BlobStore, *, job_id: str, kind: WeightsKind,
                 step: int, data: bytes) -> None:
    """Store the job's ``kind`` weights (an ``.npz``), replacing earlier ones of that kind."""
    store.put(weights_key(job_id, kind), data)
    insert = insert_for(session, Weights).values(
        job_id=job_id, kind=kind, step=step, size_bytes=len(data), created_at=utc_now()
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[Weights.job_id, Weights.kind],
            set_={
                "step": insert.excluded.step,
                "size_bytes": insert.excluded.size_bytes,
                "created_at": insert.excluded.created_at,
            },
        )
    )


def get_weights(session: Session, *, job_id: str, kind: WeightsKind) -> Weights | None:
    return session.get(Weights, (job_id, kind), populate_existing=True)


def read_weights(session: Session, store: BlobStore, *, job_id: str,
                 kind: WeightsKind) -> tuple[int, bytes] | None:
    """The step and bytes of the job's ``kind`` weights, or None."""
    weights = get_weights(session, job_id=job_id, kind=kind)
    return None if weights is None else (weights.step, store.get(weights_key(job_id, kind)))


def read_checkpoint(store: BlobStore, checkpoint: Checkpoint) -> bytes:
    return store.get(checkpoint_key(checkpoint.job_id, checkpoint.step))


def save_final(session: Session, store: BlobStore, *, job_id: str, step: int,
               data: bytes) -> None:
    """Store the final weights (an ``.npz``) of a job that succeeded at ``step``. They stand
    for its checkpoint at that step, which is not written: the job never resumes, and
    ``state_at`` gives these weights for that step."""
    save_weights(session, store, job_id=job_id, kind="final", step=step, data=data)


@dataclass(frozen=True)
class StoredState:
    """A job's state at ``step`` as stored: a checkpoint's training state, or the final
    weights (``is_weights``) of a job that succeeded at that step."""

    step: int
    data: bytes
    is_weights: bool


def state_at(session: Session, store: BlobStore, *, job: Job,
             step: int | None) -> StoredState | None:
    """The job's state at ``step`` (None: its latest), or None where none is kept."""
    if job.status == "succeeded" and step in (None, job.step):
        final = read_weights(session, store, job_id=job.id, kind="final")
        if final is not None:
            return StoredState(final[0], final[1], is_weights=True)
    if step is None:
        found = latest_checkpoint(session, job_id=job.id)
    else:
        # Beyond the job's steps there is none, and the database could not even bind a
        # number past its integers.
        found = (get_checkpoint(session, job_id=job.id, step=step)
                 if step <= job.total_steps else None)
    return (StoredState(found.step, read_checkpoint(store, found), is_weights=False)
            if found else None)
