"""The job life cycle as the model's state-change methods enforce it (no database needed)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from db.models import Job, JobStateError

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def queued() -> Job:
    return Job(id="job", status="queued", attempt=0, cancel_requested=False)


def running() -> Job:
    job = queued()
    job.mark_running(T0, workers=2)
    return job


def test_start_progress_and_success() -> None:
    job = running()
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


def test_a_redelivered_job_keeps_its_start_time_and_counts_the_attempt() -> None:
    job = running()
    job.mark_running(T0 + timedelta(minutes=10))
    assert (job.started_at, job.attempt) == (T0, 2)
    assert job.heartbeat_at == T0 + timedelta(minutes=10)


def test_failure_records_the_error() -> None:
    job = running()
    job.mark_failed("DivergedError", "loss is nan at step 7", T0)
    assert (job.status, job.error_type, job.error_message) == (
        "failed",
        "DivergedError",
        "loss is nan at step 7",
    )
    assert job.finished_at == T0


def test_cancel_request_stops_a_queued_job_at_once_and_flags_a_running_one() -> None:
    waiting = queued()
    waiting.request_cancel(T0)
    assert waiting.status == "cancelled" and waiting.finished_at == T0

    busy = running()
    busy.request_cancel()
    assert busy.status == "running" and busy.cancel_requested
    busy.mark_cancelled()
    assert busy.status == "cancelled" and busy.finished_at is not None

    busy.request_cancel()  # repeated: harmless
    assert busy.status == "cancelled"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_does_not_change_state(status: str) -> None:
    job = Job(id="job", status=status)
    for change in (
        lambda: job.mark_running(),
        lambda: job.mark_progress(1, 1),
        lambda: job.mark_failed("E", "m"),
        lambda: job.mark_cancelled(),
    ):
        with pytest.raises(JobStateError, match=status):
            change()
    assert job.status == status


def test_a_queued_job_cannot_report_progress_or_succeed() -> None:
    job = queued()
    with pytest.raises(JobStateError):
        job.mark_progress(1, 1)
    with pytest.raises(JobStateError):
        job.mark_succeeded(
            final_train_loss=None, final_val_loss=None, final_val_accuracy=None,
            best_val_loss=None, best_step=None, samples_per_s=None, seconds=None,
        )  # fmt: skip
