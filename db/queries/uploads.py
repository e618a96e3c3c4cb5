"""Resumable uploads: their rows, the leases of the requests and threads that work on them
(``db.models.Upload``), and where their bytes live in the blob store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.base import utc_now
from db.models import Upload
from db.queries.dml import affected_rows

WRITER_IDLE_S = 30.0
"""A PATCH that has received nothing for this long may be on a connection that died without
the server noticing: another PATCH may take the upload over."""
WRITER_BEAT_S = 5.0
"""How often a PATCH that receives bytes says so (well within ``WRITER_IDLE_S``)."""


def upload_prefix(upload_id: str) -> str:
    """Every blob of an upload: deleting the upload deletes the prefix."""
    return f"uploads/{upload_id}/"


def data_key(upload_id: str) -> str:
    """The whole file, once every byte has come."""
    return f"uploads/{upload_id}/data"


def tail_key(upload_id: str, parts: int) -> str:
    """The bytes after part ``parts``. Named by it, so that a writer that lost its lease
    while sending a part can never overwrite the tail that follows the new writer's parts."""
    return f"uploads/{upload_id}/tail-{parts:05d}"


@dataclass
class Received:
    """What is stored of an upload: ``offset`` bytes, as whole parts of ``part_size``
    (``parts``: ``[number, tag]`` each) and a tail of ``tail_bytes``."""

    upload_id: str
    length: int
    offset: int
    multipart_id: str | None
    parts: list[Any] = field(default_factory=list)
    tail_bytes: int = 0

    @classmethod
    def of(cls, upload: Upload) -> Received:
        return cls(upload.id, upload.length, upload.offset, upload.multipart_id,
                   [list(part) for part in upload.parts], upload.tail_bytes)


def create_upload(session: Session, *, tenant_id: str, length: int, meta: dict[str, str],
                  expiry_s: float) -> Upload:
    upload = Upload(tenant_id=tenant_id, length=length, meta=meta,
                    expires_at=utc_now() + timedelta(seconds=expiry_s))
    session.add(upload)
    session.flush()
    return upload


def get_upload(session: Session, *, tenant_id: str, upload_id: str) -> Upload | None:
    """The upload, or None if it does not exist or belongs to another tenant."""
    statement = select(Upload).where(Upload.id == upload_id, Upload.tenant_id == tenant_id)
    return session.execute(statement).scalar_one_or_none()


def take_writer(session: Session, *, tenant_id: str, upload_id: str, offset: int,
                now: datetime | None = None) -> tuple[int, Received] | None:
    """The lease of a PATCH at ``offset`` (``Upload.take_writer``) and what is stored; None
    if the upload is not receiving at that offset or another PATCH holds it."""
    attempt = session.execute(Upload.take_writer(
        upload_id, tenant_id, offset=offset, idle_s=WRITER_IDLE_S,
        now=now or utc_now())).scalar_one_or_none()
    if attempt is None:
        return None
    upload = session.get(Upload, upload_id, populate_existing=True)
    assert upload is not None
    return attempt, Received.of(upload)


def save_received(session: Session, received: Received, *, attempt: int, hold: bool,
                  expiry_s: float) -> bool:
    """Record what the writer of ``attempt`` stored, and push the expiry back; False if it
    no longer holds the upload."""
    now = utc_now()
    return affected_rows(session, Upload.save_received(
        received.upload_id, attempt, offset=received.offset,
        multipart_id=received.multipart_id, parts=received.parts,
        tail_bytes=received.tail_bytes, hold=hold, now=now,
        expires_at=now + timedelta(seconds=expiry_s))) == 1


def complete_received(session: Session, received: Received, *, attempt: int) -> bool:
    """The upload, whole, hands over to its ingest (attempt 1); False if the writer of
    ``attempt`` no longer held it."""
    return affected_rows(session, Upload.complete_received(
        received.upload_id, attempt, parts=received.parts, now=utc_now())) == 1


def renew_ingest(session: Session, *, upload_id: str, attempt: int) -> bool:
    """The heartbeat of an ingest; False if it lost its lease."""
    return affected_rows(session, Upload.renew(upload_id, attempt, now=utc_now())) == 1


def end_ingest(session: Session, *, upload_id: str, attempt: int, dataset_id: str | None,
               error: str | None, expiry_s: float, stalled_s: float | None = None) -> bool:
    """ready (``dataset_id``) or failed (``error``), if the ingest of ``attempt`` still held
    the upload (and, given ``stalled_s``, has been silent that long)."""
    now = utc_now()
    cutoff = None if stalled_s is None else now - timedelta(seconds=stalled_s)
    return affected_rows(session, Upload.end_ingest(
        upload_id, attempt, dataset_id=dataset_id, error=error, cutoff=cutoff,
        expires_at=now + timedelta(seconds=expiry_s))) == 1


def drop_ingest(session: Session, *, upload_id: str, attempt: int, error: str) -> bool:
    return affected_rows(session, Upload.drop_ingest(upload_id, attempt, error=error)) == 1


def stalled_ingests(session: Session, *, stalled_s: float,
                    now: datetime | None = None) -> list[tuple[str, int, str | None]]:
    """``(id, attempt, last error)`` of the ingests silent for ``stalled_s``."""
    cutoff = (now or utc_now()) - timedelta(seconds=stalled_s)
    statement = (select(Upload.id, Upload.attempt, Upload.error)
                 .where(Upload.status == "ingesting", Upload.idle(cutoff)))
    return [(row.id, row.attempt, row.error) for row in session.execute(statement)]


def take_stalled_ingest(session: Session, *, upload_id: str, attempt: int, stalled_s: float,
                        now: datetime | None = None) -> int | None:
    """The next attempt at an ingest still stalled at ``attempt``; None if another process
    took it first (or it came back to life)."""
    now = now or utc_now()
    return session.execute(Upload.take_stalled_ingest(
        upload_id, attempt, cutoff=now - timedelta(seconds=stalled_s),
        now=now)).scalar_one_or_none()


def expired_uploads(session: Session, *, now: datetime | None = None) -> list[tuple[str, int]]:
    """``(id, attempt)`` of the uploads past their expiry (not those being ingested)."""
    statement = (select(Upload.id, Upload.attempt)
                 .where(Upload.expires_at < (now or utc_now()), Upload.status != "ingesting"))
    return [(row.id, row.attempt) for row in session.execute(statement)]


def remove_upload(session: Session, *, upload_id: str, attempt: int,
                  tenant_id: str | None = None, expired_at: datetime | None = None) -> bool:
    """Delete the row (``Upload.remove``: not while a writer or an ingest holds it); the
    caller deletes its blobs once this is committed."""
    idle_since = utc_now() - timedelta(seconds=WRITER_IDLE_S)
    return affected_rows(session, Upload.remove(
        upload_id, attempt, tenant_id=tenant_id, expired_at=expired_at,
        idle_since=idle_since)) == 1
