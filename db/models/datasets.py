"""Uploaded training data, stored once per content per tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, new_id, utc_now

Task = Literal["classification", "regression"]


Layout = Literal["rows", "npz"]


class Dataset(Base):
    """The arrays ``X`` (n_rows x n_features) and ``y`` of one upload, kept in the blob store
    (``db.blobs.datasets`` tells the layouts); this row describes them.

    ``classes`` lists the class labels of a classification dataset (None for regression);
    ``target_min``/``target_max`` bound regression targets; ``beyond_float32`` is
    ``[array, row]`` of the first value float32 cannot hold, as uploaded.
    """

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256"),
        Index(None, "tenant_id", "created_at"),
        CheckConstraint("task IN ('classification', 'regression')", name="task"),
        CheckConstraint("layout IN ('rows', 'npz')", name="layout"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    # "rows": stored shuffled, in chunks of rows, and split contiguously by jobs; "npz": one
    # .npz of a dataset stored before that, split by each job's seed.
    layout: Mapped[Layout] = mapped_column(String(8), default="rows")
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # in the blob store
    n_rows: Mapped[int]
    n_features: Mapped[int]
    # Columns of y: 1 for class labels or a single target, k for k regression targets (the
    # output width of a regression job, known without loading the content).
    n_targets: Mapped[int] = mapped_column(default=1)
    task: Mapped[Task] = mapped_column(String(16))
    classes: Mapped[list[Any] | None] = mapped_column(JSON)
    target_min: Mapped[float | None]
    target_max: Mapped[float | None]
    beyond_float32: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
