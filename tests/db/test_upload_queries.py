"""The leases of resumable uploads, on both backends: one writer at a time, a silent one
taken over, an ingest claimed by one sweep of two, and nothing written by a lost lease."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from db.base import utc_now
from db.models import Tenant, Upload
from db.queries.tenants import create_tenant
from db.queries.uploads import (
    WRITER_IDLE_S,
    complete_received,
    create_upload,
    end_ingest,
    expired_uploads,
    get_upload,
    remove_upload,
    renew_ingest,
    save_received,
    stalled_ingests,
    take_stalled_ingest,
    take_writer,
)


def new_upload(session: Session, tenant: Tenant, length: int = 100) -> Upload:
    upload = create_upload(session, tenant_id=tenant.id, length=length,
                           meta={"format": "csv", "name": "d.csv"}, expiry_s=3600)
    session.commit()
    return upload


def test_one_writer_at_a_time_and_a_silent_one_is_taken_over(session: Session,
                                                             tenant: Tenant) -> None:
    upload = new_upload(session, tenant)
    first = take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=0)
    assert first is not None and first[0] == 1 and first[1].offset == 0
    assert take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=0) is None
    other = create_tenant(session, name="globex")
    assert take_writer(session, tenant_id=other.id, upload_id=upload.id, offset=0) is None
    attempt, received = first
    received.offset, received.tail_bytes = 40, 40
    assert save_received(session, received, attempt=attempt, hold=False, expiry_s=3600)
    session.commit()
    # Let go: the next PATCH takes it, but only at the stored offset.
    assert take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=0) is None
    second = take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=40)
    assert second is not None and second[0] == 2 and second[1].tail_bytes == 40
    # Held and silent past WRITER_IDLE_S (its connection died unseen): a third takes over.
    later = utc_now() + timedelta(seconds=WRITER_IDLE_S + 1)
    third = take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=40,
                        now=later)
    assert third is not None and third[0] == 3
    stale = second[1]
    stale.offset = 99
    assert not save_received(session, stale, attempt=2, hold=False, expiry_s=3600)
    assert get_upload(session, tenant_id=tenant.id, upload_id=upload.id).offset == 40  # type: ignore[union-attr]


def test_the_last_byte_hands_over_to_the_ingest(session: Session, tenant: Tenant) -> None:
    upload = new_upload(session, tenant)
    taken = take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=0)
    assert taken is not None
    attempt, received = taken
    received.offset = 100
    assert complete_received(session, received, attempt=attempt)
    session.commit()
    row = get_upload(session, tenant_id=tenant.id, upload_id=upload.id)
    session.refresh(row)
    assert row is not None and (row.status, row.offset, row.attempt) == ("ingesting", 100, 1)
    assert not save_received(session, received, attempt=attempt, hold=False, expiry_s=3600)
    assert take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=100) is None
    assert not remove_upload(session, upload_id=upload.id, attempt=1)  # not while ingesting
    assert renew_ingest(session, upload_id=upload.id, attempt=1)
    assert not renew_ingest(session, upload_id=upload.id, attempt=2)


def test_a_stalled_ingest_goes_to_one_sweep_and_the_old_attempt_writes_nothing(
        session: Session, tenant: Tenant) -> None:
    upload = new_upload(session, tenant)
    taken = take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=0)
    assert taken is not None
    complete_received(session, taken[1], attempt=taken[0])
    session.commit()
    assert stalled_ingests(session, stalled_s=60) == []
    later = utc_now() + timedelta(seconds=61)
    assert stalled_ingests(session, stalled_s=60, now=later) == [(upload.id, 1, None)]
    # Two sweeps saw it at attempt 1: one wins.
    assert take_stalled_ingest(session, upload_id=upload.id, attempt=1, stalled_s=60,
                               now=later) == 2
    assert take_stalled_ingest(session, upload_id=upload.id, attempt=1, stalled_s=60,
                               now=later) is None
    assert not end_ingest(session, upload_id=upload.id, attempt=1, dataset_id=None,
                          error="late", expiry_s=60)
    assert end_ingest(session, upload_id=upload.id, attempt=2, dataset_id=None,
                      error="row 7: NaN", expiry_s=60)
    session.commit()
    row = get_upload(session, tenant_id=tenant.id, upload_id=upload.id)
    session.refresh(row)
    assert row is not None and (row.status, row.error, row.heartbeat_at) == (
        "failed", "row 7: NaN", None)


def test_removal_and_expiry(session: Session, tenant: Tenant) -> None:
    upload = new_upload(session, tenant)
    taken = take_writer(session, tenant_id=tenant.id, upload_id=upload.id, offset=0)
    assert taken is not None
    assert not remove_upload(session, upload_id=upload.id, attempt=1)  # a writer holds it
    save_received(session, taken[1], attempt=1, hold=False, expiry_s=3600)
    other = create_tenant(session, name="globex")
    assert not remove_upload(session, upload_id=upload.id, attempt=1, tenant_id=other.id)
    assert not remove_upload(session, upload_id=upload.id, attempt=0)  # changed hands
    now = utc_now()
    assert expired_uploads(session, now=now) == []
    assert not remove_upload(session, upload_id=upload.id, attempt=1, expired_at=now)
    past = now + timedelta(hours=2)
    assert expired_uploads(session, now=past) == [(upload.id, 1)]
    assert remove_upload(session, upload_id=upload.id, attempt=1, expired_at=past)
    assert get_upload(session, tenant_id=tenant.id, upload_id=upload.id) is None
