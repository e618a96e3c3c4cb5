"""Training jobs: what was submitted, where it stands, and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, finite_or_none, new_id, utc_now

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ERROR_TYPE_LENGTH = 200


class JobStateError(RuntimeError):
    """A state change that the job's current status does not allow."""


class Job(Base):
    """One training run of a job spec on a dataset.

    Life cycle: ``queued -> running -> succeeded | failed | cancelled``; a queued job may be
    cancelled directly, and a redelivered job goes ``running -> running`` with ``attempt`` + 1.
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
    # A dataset cannot be deleted while a job refers to it; the default NO ACTION (rather than
    # RESTRICT) is checked at the end of the statement, so deleting a tenant still cascades
    # through both its jobs and its datasets.
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
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

    def mark_running(self, now: datetime | None = None, *, workers: int | None = None) -> None:
        """A worker (re)started the job; a redelivery after a crash counts as a new attempt."""
        self._require("queued", "running", change="start")
        now = now or utc_now()
        if self.started_at is None:
            self.started_at = now
        self.status = "running"
        self.heartbeat_at = now
        self.attempt += 1
        self.workers = workers

    def mark_progress(self, epoch: int, step: int, now: datetime | None = None) -> None:
        self._require("running", change="record progress of")
        self.epoch = epoch
        self.step = step
        self.heartbeat_at = now or utc_now()

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
