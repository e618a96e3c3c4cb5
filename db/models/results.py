"""What a running job produces: its loss history, checkpoints and weights."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utc_now

WeightsKind = Literal["final", "best"]


class Metric(Base):
    """The losses recorded at one step; validation values only at epoch ends."""

    __tablename__ = "metrics"
    __table_args__ = (
        # The epoch ends alone (rows with validation values): a job's latest validated step is
        # found there at once, however long its history, not by scanning every step.
        Index("ix_metrics_validated", "job_id", "step",
              postgresql_where=text("val_loss IS NOT NULL"),
              sqlite_where=text("val_loss IS NOT NULL")),
    )

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    epoch: Mapped[int]
    # Nullable: a diverged step (NaN or infinite loss) is recorded without a value.
    train_loss: Mapped[float | None]
    val_loss: Mapped[float | None]
    val_accuracy: Mapped[float | None]


class Checkpoint(Base):
    """The training state (weights and optimizer) after ``step``, an .npz in the blob store
    (``db.queries.checkpoints``); step 0 is the start."""

    __tablename__ = "checkpoints"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Weights(Base):
    """A job's final or best weights, an ``.npz`` of ``W1, b1, W2, b2, ...`` in the blob
    store."""

    __tablename__ = "weights"
    __table_args__ = (CheckConstraint("kind IN ('final', 'best')", name="kind"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[WeightsKind] = mapped_column(String(8), primary_key=True)
    step: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
