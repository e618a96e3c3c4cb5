"""Training jobs: what was submitted, where it stands, and how it ended."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.dml import ReturningUpdate, Update

from db.base import Base, finite_or_none, new_id, utc_now

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ERROR_TYPE_LENGTH = 200


class JobStateError(RuntimeError):
    """A state change that the job's current status does not allow."""


class Job(Base):
    """One training run of a job spec on a dataset.

    Life cycle: ``queued -> running -> succeeded | failed | cancelled``. Each transition is
    named once, here. Those of the row a session holds are methods (``mark_*``,
    ``request_cancel``, ``rewind_to``, ``record_stats``). Those that workers race for are
    conditional UPDATEs built here and run by ``db.queries.leases``, so that one of two
    racing workers wins: ``claim`` (queued, or running without a heartbeat, to running with
    attempt + 1), ``release`` (running to queued), and the watchdog's ``requeue_stalled`` and
    ``fail_stalled``.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index(None, "tenant_id", "created_at"),
        Index(None, "tenant_id", "status"),
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # A dataset that a queued or running job uses is not deleted (the API refuses it); an
    # ended job outlives its dataset, with its history and weights.
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[JobStatus] = mapped_column(String(16), default="queued")

    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]

    epoch: Mapped[int] = mapped_column(default=0)
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int]
    attempt: Mapped[int] = mapped_column(default=0)
    workers: Mapped[int | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error_type: Mapped[str | None] = mapped_column(String(ERROR_TYPE_LENGTH))
    error_message: Mapped[str | None] = mapped_column(Text)

    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    final_train_loss: Mapped[float | None]
    final_val_loss: Mapped[float | None]
    final_val_accuracy: Mapped[float | None]
    best_val_loss: Mapped[float | None]
    best_step: Mapped[int | None]
    samples_per_s: Mapped[float | None]
    seconds: Mapped[float | None]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def mark_progress(self, epoch: int, step: int, now: datetime | None = None) -> None:
        self._require("running", change="record progress of")
        self.epoch = epoch
        self.step = step
        self.heartbeat_at = now or utc_now()

    def record_stats(self, *, best_val_loss: float | None, best_step: int | None,
                     samples_per_s: float | None, workers: int) -> None:
        """The leader's latest figures: the best validation so far, the throughput, and the
        ranks training the job (fewer once one is lost)."""
        self._require("running", change="record figures of")
        self.best_val_loss, self.best_step = best_val_loss, best_step
        self.samples_per_s = samples_per_s
        self.workers = workers

    def rewind_to(self, step: int, epoch: int) -> None:
        """Set a job that no leader holds back to the checkpoint at ``step`` (of ``epoch``):
        the next attempt resumes there, a cancelled job ends there."""
        self._require("queued", change="rewind")
        self.step, self.epoch = step, epoch

    def mark_succeeded(
        self,
        *,
        final_train_loss: float | None,
        final_val_loss: float | None,
        final_val_accuracy: float | None,
        best_val_loss: float | None,
        best_step: int | None,
        samples_per_s: float | None,
        seconds: float | None,
        now: datetime | None = None,
    ) -> None:
        """Record the outcome; non-finite losses are stored as None (see ``finite_or_none``)."""
        self._require("running", change="complete")
        self.final_train_loss = finite_or_none(final_train_loss)
        self.final_val_loss = finite_or_none(final_val_loss)
        self.final_val_accuracy = finite_or_none(final_val_accuracy)
        self.best_val_loss = finite_or_none(best_val_loss)
        self.best_step = best_step
        self.samples_per_s = samples_per_s
        self.seconds = seconds
        self._finish("succeeded", now)

    def mark_failed(self, error_type: str, message: str, now: datetime | None = None) -> None:
        self._require("queued", "running", change="fail")
        # Cut to the column's size: recording a failure must not fail on a long class name.
        self.error_type = error_type[:ERROR_TYPE_LENGTH]
        self.error_message = message
        self._finish("failed", now)

    def mark_cancelled(self, now: datetime | None = None) -> None:
        self._require("queued", "running", change="cancel")
        self._finish("cancelled", now)

    def request_cancel(self, now: datetime | None = None) -> None:
        """Cancel a queued job at once; ask a running one to stop at its next step.

        Cancelling a finished job changes nothing, so a repeated request is harmless.
        """
        if self.status == "queued":
            self.mark_cancelled(now)
        elif self.status == "running":
            self.cancel_requested = True

    def _finish(self, status: JobStatus, now: datetime | None) -> None:
        self.status = status
        self.finished_at = now or utc_now()

    def _require(self, *allowed: JobStatus, change: str) -> None:
        if self.status not in allowed:
            raise JobStateError(f"cannot {change} job {self.id}: it is {self.status}")

    # The transitions that workers race for, as conditional UPDATEs (see the class doc).

    @classmethod
    def claim(cls, job_id: str, *, stall_timeout_s: float, held: int | None,
              now: datetime) -> ReturningUpdate[int]:
        """queued, or running without a heartbeat for ``stall_timeout_s`` (or at attempt
        ``held``, the caller's own), to running at attempt + 1; returns the new attempt. The
        first claim's time is kept as the start."""
        expired = or_(cls.heartbeat_at.is_(None),
                      cls.heartbeat_at < now - timedelta(seconds=stall_timeout_s))
        running = and_(cls.status == "running",
                       or_(expired, cls.attempt == held) if held is not None else expired)
        return (
            update(cls)
            .where(cls.id == job_id, cls.cancel_requested.is_(False),
                   or_(cls.status == "queued", running))
            .values(status="running", attempt=cls.attempt + 1, heartbeat_at=now, workers=1,
                    started_at=func.coalesce(cls.started_at, now))
            .returning(cls.attempt)
            .execution_options(synchronize_session=False)
        )

    @classmethod
    def release(cls, job_id: str, attempt: int) -> Update:
        """running at ``attempt`` to queued: handed back, resumed by the next claim."""
        return (update(cls)
                .where(cls.id == job_id, cls.status == "running", cls.attempt == attempt)
                .values(status="queued", workers=None)
                .execution_options(synchronize_session=False))

    @classmethod
    def stalled(cls, cutoff: datetime) -> ColumnElement[bool]:
        """No heartbeat since ``cutoff``, or none at all."""
        return or_(cls.heartbeat_at.is_(None), cls.heartbeat_at < cutoff)

    @classmethod
    def requeue_stalled(cls, job_id: str, status: JobStatus, attempt: int, *,
                        cutoff: datetime, now: datetime) -> Update:
        """Still ``status`` at ``attempt`` and stalled since ``cutoff``, to queued, its
        heartbeat set to ``now`` so that it is re-sent once per stall timeout."""
        return (update(cls)
                .where(cls.id == job_id, cls.status == status, cls.attempt == attempt,
                       cls.stalled(cutoff))
                .values(status="queued", heartbeat_at=now, workers=None)
                .execution_options(synchronize_session=False))

    @classmethod
    def fail_stalled(cls, job_id: str, status: JobStatus, attempt: int, *, cutoff: datetime,
                     message: str, now: datetime) -> Update:
        """Still ``status`` at ``attempt`` and stalled since ``cutoff``, to failed
        (``stalled``): ``mark_failed`` as one statement."""
        return (update(cls)
                .where(cls.id == job_id, cls.status == status, cls.attempt == attempt,
                       cls.stalled(cutoff))
                .values(status="failed", error_type="stalled", error_message=message,
                        finished_at=now)
                .execution_options(synchronize_session=False))
