"""Datasets: stored once per content per tenant, and private to their tenant."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.base import new_id, utc_now
from db.engine import make_session_factory, session_scope
from db.models import Dataset, Tenant
from db.queries.datasets import DatasetFacts, get_dataset, list_datasets, store_dataset
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
