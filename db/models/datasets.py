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
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, new_id, utc_now

Task = Literal["classification", "regression"]


class Dataset(Base):
    """The arrays ``X`` (n_rows x n_features) and ``y`` of one upload, as canonical ``.npz`` bytes.

    ``classes`` lists the class labels of a classification dataset (None for regression).
    """

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256"),
        Index(None, "tenant_id", "created_at"),
        CheckConstraint("task IN ('classification', 'regression')", name="task"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    # Deferred: listing datasets must not pull every upload (up to max_body_bytes each) into
    # memory; the content loads on first access, inside the session.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    n_rows: Mapped[int]
    n_features: Mapped[int]
    # Columns of y: 1 for class labels or a single target, k for k regression targets (the
    # output width of a regression job, known without loading the content).
    n_targets: Mapped[int] = mapped_column(default=1)
    task: Mapped[Task] = mapped_column(String(16))
    classes: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
