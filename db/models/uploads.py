"""Resumable uploads: a file sent in parts (``api.routes.uploads`` tells the protocol), then
read into a dataset (``api.services.upload_ingest``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    String,
    Text,
    and_,
    delete,
    or_,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.dml import Delete, ReturningUpdate, Update

from db.base import Base, new_id, utc_now

UploadStatus = Literal["receiving", "ingesting", "ready", "failed"]


class Upload(Base):
    """A file of ``length`` bytes of which ``offset`` are stored: whole parts of a multipart
    upload in the blob store (``multipart_id``, ``parts``), and the bytes after the last whole
    part in a tail blob (``tail_bytes``). Once complete it is read into a dataset
    (``ingesting``), which it names when ``ready``; ``failed`` says why in ``error``.

    One request or thread at a time works on an upload: it holds a lease, ``(attempt,
    heartbeat_at)``, taken and kept with conditional UPDATEs as ``db.queries.leases`` does for
    jobs. While ``receiving``, the lease is a PATCH's (``take_writer``; released with the
    heartbeat set NULL); while ``ingesting``, an ingest's, whose ``attempt`` counts from 1
    (``complete``, then ``take_stalled_ingest``). Every write of a holder names its status
    and attempt, so a holder that lost its lease writes nothing.
    """

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
    attempt: Mapped[int] = mapped_column(default=0)
    heartbeat_at: Mapped[datetime | None]
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]

    @property
    def complete(self) -> bool:
        return self.status != "receiving"

    @classmethod
    def idle(cls, cutoff: datetime) -> ColumnElement[bool]:
        """No holder has shown life since ``cutoff`` (or none holds it)."""
        return or_(cls.heartbeat_at.is_(None), cls.heartbeat_at < cutoff)

    # The transitions that requests and API processes race for, as conditional UPDATEs.

    @classmethod
    def take_writer(cls, upload_id: str, tenant_id: str, *, offset: int, idle_s: float,
                    now: datetime) -> ReturningUpdate[int]:
        """receiving at ``offset``, with no writer or one silent for ``idle_s``, to written
        by a new attempt (returned)."""
        return (update(cls)
                .where(cls.id == upload_id, cls.tenant_id == tenant_id,
                       cls.status == "receiving", cls.offset == offset,
                       cls.idle(now - timedelta(seconds=idle_s)))
                .values(attempt=cls.attempt + 1, heartbeat_at=now)
                .returning(cls.attempt)
                .execution_options(synchronize_session=False))

    @classmethod
    def save_received(cls, upload_id: str, attempt: int, *, offset: int,
                      multipart_id: str | None, parts: list[Any], tail_bytes: int,
                      hold: bool, expires_at: datetime, now: datetime) -> Update:
        """What the writer of ``attempt`` has stored; ``hold``: it goes on writing (a
        heartbeat), else it lets go."""
        return (update(cls)
                .where(cls.id == upload_id, cls.status == "receiving", cls.attempt == attempt)
                .values(offset=offset, multipart_id=multipart_id, parts=parts,
                        tail_bytes=tail_bytes, heartbeat_at=now if hold else None,
                        expires_at=expires_at)
                .execution_options(synchronize_session=False))

    @classmethod
    def complete_received(cls, upload_id: str, attempt: int, *, parts: list[Any],
                          now: datetime) -> Update:
        """Every byte stored by the writer of ``attempt``: to ingesting, at ingest attempt 1."""
        return (update(cls)
                .where(cls.id == upload_id, cls.status == "receiving", cls.attempt == attempt)
                .values(status="ingesting", offset=cls.length, parts=parts, tail_bytes=0,
                        attempt=1, heartbeat_at=now, error=None)
                .execution_options(synchronize_session=False))

    @classmethod
    def renew(cls, upload_id: str, attempt: int, *, now: datetime) -> Update:
        """The ingest of ``attempt`` is alive."""
        return (update(cls)
                .where(cls.id == upload_id, cls.status == "ingesting", cls.attempt == attempt)
                .values(heartbeat_at=now)
                .execution_options(synchronize_session=False))

    @classmethod
    def take_stalled_ingest(cls, upload_id: str, attempt: int, *, cutoff: datetime,
                            now: datetime) -> ReturningUpdate[int]:
        """ingesting at ``attempt`` without a heartbeat since ``cutoff``, to the next attempt
        (returned), held from ``now``."""
        return (update(cls)
                .where(cls.id == upload_id, cls.status == "ingesting", cls.attempt == attempt,
                       cls.idle(cutoff))
                .values(attempt=cls.attempt + 1, heartbeat_at=now)
                .returning(cls.attempt)
                .execution_options(synchronize_session=False))

    @classmethod
    def end_ingest(cls, upload_id: str, attempt: int, *, dataset_id: str | None,
                   error: str | None, expires_at: datetime,
                   cutoff: datetime | None = None) -> Update:
        """ingesting at ``attempt`` (and, given ``cutoff``, stalled since then) to ready with
        ``dataset_id``, or to failed with ``error``; the status stays readable until
        ``expires_at``."""
        condition = and_(cls.id == upload_id, cls.status == "ingesting",
                         cls.attempt == attempt)
        if cutoff is not None:
            condition = and_(condition, cls.idle(cutoff))
        return (update(cls)
                .where(condition)
                .values(status="ready" if error is None else "failed", dataset_id=dataset_id,
                        error=error, heartbeat_at=None, expires_at=expires_at)
                .execution_options(synchronize_session=False))

    @classmethod
    def drop_ingest(cls, upload_id: str, attempt: int, *, error: str) -> Update:
        """The ingest of ``attempt`` broke down (not the data's fault): let go at once, so
        that the next sweep tries again, keeping ``error`` for when attempts run out."""
        return (update(cls)
                .where(cls.id == upload_id, cls.status == "ingesting", cls.attempt == attempt)
                .values(heartbeat_at=None, error=error)
                .execution_options(synchronize_session=False))

    @classmethod
    def remove(cls, upload_id: str, attempt: int, *, tenant_id: str | None = None,
               expired_at: datetime | None = None, idle_since: datetime) -> Delete:
        """The row, unless it is ingesting, a writer holds it (heard from after
        ``idle_since``) or it changed hands since ``attempt``; given ``expired_at``, only if
        it expired by then; given ``tenant_id``, only that tenant's."""
        condition = and_(cls.id == upload_id, cls.attempt == attempt,
                         cls.status != "ingesting", cls.idle(idle_since))
        if tenant_id is not None:
            condition = and_(condition, cls.tenant_id == tenant_id)
        if expired_at is not None:
            condition = and_(condition, cls.expires_at < expired_at)
        return delete(cls).where(condition).execution_options(synchronize_session=False)
