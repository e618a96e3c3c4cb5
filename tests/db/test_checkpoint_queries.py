"""Checkpoints and weights: their bytes in the blob store, their rows in SQL; upserts,
latest lookup, and pruning that keeps step 0."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.blobs import BlobStore
from db.models import Checkpoint, Job
from db.queries.checkpoints import (
    checkpoint_key,
    get_checkpoint,
    get_weights,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    read_weights,
    save_checkpoint,
    save_weights,
)


def steps(session: Session, job: Job) -> list[int]:
    statement = select(Checkpoint.step).where(Checkpoint.job_id == job.id).order_by(Checkpoint.step)
    return list(session.execute(statement).scalars())


def test_latest_checkpoint_is_the_highest_step(
    session: Session, store: BlobStore, add_job: Callable[..., Job]
) -> None:
    job, other = add_job(), add_job()
    assert latest_checkpoint(session, job_id=job.id) is None
    for step in (0, 20, 10):
        save_checkpoint(session, store, job_id=job.id, step=step, state=f"state {step}".encode())
    save_checkpoint(session, store, job_id=other.id, step=99, state=b"other")
    latest = latest_checkpoint(session, job_id=job.id)
    assert latest is not None and latest.step == 20
    assert read_checkpoint(store, latest) == b"state 20" and latest.size_bytes == 8


def test_saving_a_step_again_replaces_its_state(
    session: Session, store: BlobStore, add_job: Callable[..., Job]
) -> None:
    job = add_job()
    save_checkpoint(session, store, job_id=job.id, step=5, state=b"before crash")
    loaded = get_checkpoint(session, job_id=job.id, step=5)
    assert loaded is not None and read_checkpoint(store, loaded) == b"before crash"
    save_checkpoint(session, store, job_id=job.id, step=5, state=b"after replay")
    reloaded = get_checkpoint(session, job_id=job.id, step=5)
    assert reloaded is not None and read_checkpoint(store, reloaded) == b"after replay"
    assert get_checkpoint(session, job_id=job.id, step=6) is None


@pytest.mark.parametrize(("keep", "left"), [(0, [0]), (2, [0, 30, 40]), (10, [0, 10, 20, 30, 40])])
def test_prune_keeps_the_latest_and_step_zero(
    session: Session, store: BlobStore, add_job: Callable[..., Job], keep: int, left: list[int]
) -> None:
    job, other = add_job(), add_job()
    for step in (0, 10, 20, 30, 40):
        save_checkpoint(session, store, job_id=job.id, step=step, state=b"s")
    save_checkpoint(session, store, job_id=other.id, step=10, state=b"s")
    assert get_checkpoint(session, job_id=job.id, step=10) is not None  # loaded, then pruned
    deleted = prune_checkpoints(session, job_id=job.id, keep=keep)
    assert steps(session, job) == left
    assert (get_checkpoint(session, job_id=job.id, step=10) is not None) == (10 in left)
    # The rows go now; their blobs are the caller's to delete once that is committed.
    assert sorted(deleted) == [checkpoint_key(job.id, step) for step in (0, 10, 20, 30, 40)
                               if step not in left]
    assert all(store.exists(key) for key in deleted)
    assert steps(session, other) == [10]


def test_prune_refuses_a_negative_keep(session: Session, add_job: Callable[..., Job]) -> None:
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(session, job_id=add_job().id, keep=-1)


def test_weights_are_kept_per_kind_and_replaced(
    session: Session, store: BlobStore, add_job: Callable[..., Job]
) -> None:
    job = add_job()
    assert get_weights(session, job_id=job.id, kind="final") is None
    save_weights(session, store, job_id=job.id, kind="best", step=10, data=b"best at 10")
    first = get_weights(session, job_id=job.id, kind="best")
    assert first is not None and first.step == 10
    save_weights(session, store, job_id=job.id, kind="best", step=30, data=b"best at 30")
    save_weights(session, store, job_id=job.id, kind="final", step=40, data=b"final")
    best = get_weights(session, job_id=job.id, kind="best")
    final = get_weights(session, job_id=job.id, kind="final")
    assert best is not None and best.step == 30 and best.size_bytes == 10
    assert final is not None and final.step == 40
    assert read_weights(session, store, job_id=job.id, kind="best") == (30, b"best at 30")
    assert read_weights(session, store, job_id=job.id, kind="final") == (40, b"final")
