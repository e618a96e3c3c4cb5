"""Resumable uploads: a file sent in parts (``api.uploads`` tells the protocol), then read
into a dataset."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, new_id, utc_now

UploadStatus = Literal["receiving", "ingesting", "ready", "failed"]


class Upload(Base):
    """A file of ``length`` bytes of which ``offset`` are stored: whole parts of a multipart
    upload in the blob store (``multipart_id``, ``parts``), and the bytes after the last whole
    part in a tail blob (``tail_bytes``). Once complete it is read into a dataset
    (``ingesting``), which it names when ``ready``; ``failed`` says why in ``error``."""

    __tablename__ = "uploads"
    __table_args__ = (
        Index(None, "tenant_id", "created_at"),
        Index(None, "expires_at"),
        CheckConstraint("status IN ('receiving', 'ingesting', 'ready', 'failed')",
                        name="status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # The dataset to make of it: name, format, target column (tus Upload-Metadata).
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    multipart_id: Mapped[str | None] = mapped_column(String(1024))
    parts: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [number, tag] each
    tail_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[UploadStatus] = mapped_column(String(16), default="receiving")
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
