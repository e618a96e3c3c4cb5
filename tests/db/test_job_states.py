"""The job life cycle as the model's transitions enforce it: its methods, and the claim that
starts a job (a conditional UPDATE)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from db.models import Job, JobStateError
from db.queries.leases import claim_job
from tests.utils.jobs import claimed

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AddJob = Callable[..., Job]


@pytest.fixture
def queued(add_job: AddJob) -> Job:
    return add_job()


@pytest.fixture
def running(session: Session, queued: Job) -> Job:
    """Claimed at T0; its leader's first write says it trains on 2 ranks."""
    job = claimed(queued, now=T0)
    job.record_stats(best_val_loss=None, best_step=None, samples_per_s=None, workers=2)
    return job


def test_start_progress_and_success(running: Job) -> None:
    job = running
    assert (job.status, job.started_at, job.heartbeat_at, job.attempt, job.workers) == (
        "running",
        T0,
        T0,
        1,
        2,
    )
    job.mark_progress(3, 120, T0 + timedelta(seconds=5))
    assert (job.epoch, job.step, job.heartbeat_at) == (3, 120, T0 + timedelta(seconds=5))
    job.mark_succeeded(
        final_train_loss=0.1, final_val_loss=math.nan, final_val_accuracy=0.9,
        best_val_loss=0.2, best_step=100, samples_per_s=1e5, seconds=12.5,
        now=T0 + timedelta(seconds=9),
    )  # fmt: skip
    assert job.status == "succeeded" and job.is_finished
    assert job.finished_at == T0 + timedelta(seconds=9)
    assert (job.final_train_loss, job.final_val_loss, job.best_step) == (0.1, None, 100)


def test_a_redelivered_job_keeps_its_start_time_and_counts_the_attempt(
        session: Session, running: Job) -> None:
    job = claimed(running, now=T0 + timedelta(minutes=10), held=1)
    assert (job.started_at, job.attempt) == (T0, 2)
    assert job.heartbeat_at == T0 + timedelta(minutes=10)


def test_failure_records_the_error(running: Job) -> None:
    job = running
    job.mark_failed("DivergedError", "loss is nan at step 7", T0)
    assert (job.status, job.error_type, job.error_message) == (
        "failed",
        "DivergedError",
        "loss is nan at step 7",
    )
    assert job.finished_at == T0


def test_cancel_request_stops_a_queued_job_at_once_and_flags_a_running_one(
        session: Session, add_job: AddJob) -> None:
    waiting = add_job()
    waiting.request_cancel(T0)
    assert waiting.status == "cancelled" and waiting.finished_at == T0

    busy = claimed(add_job())
    busy.request_cancel()
    assert busy.status == "running" and busy.cancel_requested
    busy.mark_cancelled()
    assert busy.status == "cancelled" and busy.finished_at is not None

    busy.request_cancel()  # repeated: harmless
    assert busy.status == "cancelled"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_does_not_change_state(session: Session, queued: Job,
                                              status: str) -> None:
    job = queued
    job.status = status
    session.flush()
    assert claim_job(session, job_id=job.id, stall_timeout_s=60) is None
    for change in (
        lambda: job.mark_progress(1, 1),
        lambda: job.mark_failed("E", "m"),
        lambda: job.mark_cancelled(),
    ):
        with pytest.raises(JobStateError, match=status):
            change()
    assert job.status == status


def test_a_queued_job_cannot_report_progress_or_succeed(queued: Job) -> None:
    job = queued
    with pytest.raises(JobStateError):
        job.mark_progress(1, 1)
    with pytest.raises(JobStateError):
        job.mark_succeeded(
            final_train_loss=None, final_val_loss=None, final_val_accuracy=None,
            best_val_loss=None, best_step=None, samples_per_s=None, seconds=None,
        )  # fmt: skip


def test_only_a_job_that_no_leader_holds_is_rewound(session: Session, add_job: AddJob) -> None:
    handed_back = add_job()
    handed_back.rewind_to(4, 1)
    assert (handed_back.step, handed_back.epoch) == (4, 1)
    with pytest.raises(JobStateError, match="running"):
        claimed(add_job()).rewind_to(4, 1)
