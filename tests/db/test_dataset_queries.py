"""Datasets: stored once per content per tenant, private to their tenant, and deleted only
while no queued or running job uses them."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.base import new_id, utc_now
from db.engine import make_session_factory, session_scope
from db.models import Dataset, Job, Tenant
from db.queries.datasets import (
    DatasetFacts,
    active_job_using,
    delete_dataset_row,
    get_dataset,
    list_datasets,
    store_dataset,
)
from db.queries.jobs import create_job
from db.queries.tenants import create_tenant


def store(session: Session, tenant: Tenant, content: bytes, name: str) -> tuple[Dataset, bool]:
    """The row of a dataset of ``content`` (its blobs are the caller's to write)."""
    return store_dataset(
        session, dataset_id=new_id(), tenant_id=tenant.id, name=name,
        facts=DatasetFacts(sha256=hashlib.sha256(content).hexdigest(), size_bytes=len(content),
                           n_rows=3, n_features=2, task="regression", classes=None,
                           target_min=-1.0, target_max=2.5))


def test_same_content_is_stored_once_per_tenant(session: Session, tenant: Tenant) -> None:
    other_tenant = create_tenant(session, name="globex")
    first, created = store(session, tenant, b"content", "a.npz")
    again, created_again = store(session, tenant, b"content", "b.npz")
    theirs, created_theirs = store(session, other_tenant, b"content", "a.npz")

    assert created and not created_again and created_theirs
    assert again.id == first.id and again.name == "a.npz"
    assert theirs.id != first.id
    assert first.size_bytes == len(b"content") and first.layout == "rows"
    assert (first.target_min, first.target_max) == (-1.0, 2.5)
    assert session.execute(select(func.count()).select_from(Dataset)).scalar_one() == 2


def test_a_dataset_is_invisible_to_other_tenants(session: Session, tenant: Tenant) -> None:
    other_tenant = create_tenant(session, name="globex")
    dataset, _ = store(session, tenant, b"content", "a.npz")
    assert get_dataset(session, tenant_id=tenant.id, dataset_id=dataset.id) is not None
    assert get_dataset(session, tenant_id=other_tenant.id, dataset_id=dataset.id) is None
    assert list_datasets(session, tenant_id=other_tenant.id) == ([], None)


def test_list_datasets_pages_newest_first(session: Session, tenant: Tenant) -> None:
    start = utc_now()
    stored = []
    for i in range(5):
        dataset, _ = store(session, tenant, f"content {i}".encode(), f"{i}.npz")
        # Two share a timestamp, so the id must break the tie.
        dataset.created_at = start + timedelta(seconds=min(i, 3))
        stored.append(dataset)
    session.flush()

    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = list_datasets(session, tenant_id=tenant.id, limit=2, cursor=cursor)
        seen += [dataset.id for dataset in page]
        if cursor is None:
            break
    expected = sorted(stored, key=lambda d: (d.created_at, d.id), reverse=True)
    assert seen == [dataset.id for dataset in expected]


def test_concurrent_uploads_of_the_same_content_store_one_dataset(
    session: Session, engine: Engine
) -> None:
    factory = make_session_factory(engine)
    with session_scope(factory) as setup:
        tenant = create_tenant(setup, name="acme")
    barrier = Barrier(2)

    def upload(name: str) -> tuple[str, bool]:
        with session_scope(factory) as own:
            barrier.wait()
            dataset, created = store(own, tenant, b"same bytes", name)
            return dataset.id, created

    with ThreadPoolExecutor(2) as pool:
        results: list[tuple[str, bool]] = list(pool.map(upload, ["a.npz", "b.npz"]))

    assert len({dataset_id for dataset_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, True]


def _postgresql_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite takes no row locks: its writers are serialised instead")


def test_a_deletion_waits_for_a_job_being_queued_and_then_sees_it(
    session: Session, engine: Engine
) -> None:
    _postgresql_only(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as setup:
        tenant = create_tenant(setup, name="acme")
        dataset, _ = store(setup, tenant, b"content", "a.npz")
    seen: list[Job | None] = []

    def delete() -> None:
        with session_scope(factory) as deleting:
            assert get_dataset(deleting, tenant_id=tenant.id, dataset_id=dataset.id,
                               lock="update") is not None
            seen.append(active_job_using(deleting, dataset_id=dataset.id))

    with ThreadPoolExecutor(1) as pool:
        with session_scope(factory) as submitting:
            assert get_dataset(submitting, tenant_id=tenant.id, dataset_id=dataset.id,
                               lock="share") is not None
            deletion = pool.submit(delete)
            time.sleep(0.3)
            assert not deletion.done()  # it waits for the submission's commit
            job, _ = create_job(submitting, tenant_id=tenant.id, dataset_id=dataset.id,
                                name="run", tags={}, spec={}, total_steps=1)
        deletion.result(timeout=10)
    assert seen[0] is not None and seen[0].id == job.id


def test_a_job_that_waited_for_a_deletion_finds_no_dataset(
    session: Session, engine: Engine
) -> None:
    _postgresql_only(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as setup:
        tenant = create_tenant(setup, name="acme")
        dataset, _ = store(setup, tenant, b"content", "a.npz")

    def submit() -> Dataset | None:
        with session_scope(factory) as submitting:
            return get_dataset(submitting, tenant_id=tenant.id, dataset_id=dataset.id,
                               lock="share")

    with ThreadPoolExecutor(1) as pool, session_scope(factory) as deleting:
        assert get_dataset(deleting, tenant_id=tenant.id, dataset_id=dataset.id,
                           lock="update") is not None
        delete_dataset_row(deleting, dataset_id=dataset.id)
        submission = pool.submit(submit)
        time.sleep(0.3)
        assert not submission.done()  # it waits for the deletion's commit
    assert submission.result(timeout=10) is None


def test_deleting_a_dataset_keeps_its_ended_jobs(session: Session, tenant: Tenant) -> None:
    dataset, _ = store(session, tenant, b"content", "a.npz")
    job, _ = create_job(session, tenant_id=tenant.id, dataset_id=dataset.id, name="run",
                        tags={}, spec={}, total_steps=1)
    job.mark_cancelled()
    session.flush()
    assert active_job_using(session, dataset_id=dataset.id) is None
    dataset_id, job_id = dataset.id, job.id
    delete_dataset_row(session, dataset_id=dataset_id)
    session.expire_all()
    assert get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id) is None
    kept = session.get(Job, job_id)
    assert kept is not None and kept.dataset_id is None and kept.status == "cancelled"
