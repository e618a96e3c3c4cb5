"""Job submission with idempotency keys, tenant isolation, and the listing of past runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db.base import new_id, utc_now
from db.engine import make_session_factory, session_scope
from db.models import Dataset, Job, Tenant
from db.queries.datasets import DatasetFacts, store_dataset
from db.queries.jobs import (
    IdempotencyConflict,
    JobOrder,
    count_queued,
    create_job,
    get_job,
    list_jobs,
)
from db.queries.pagination import InvalidCursor
from db.queries.tenants import create_tenant
from tests.utils.jobs import claimed

AddJob = Callable[..., Job]


def test_same_idempotency_key_and_request_return_the_first_job(
    session: Session, add_job: AddJob, tenant: Tenant, dataset: Dataset
) -> None:
    first = add_job(idempotency_key="k1", request_hash="h1")
    again, created = create_job(
        session,
        tenant_id=tenant.id,
        dataset_id=dataset.id,
        name="run",
        tags={},
        spec={"epochs": 1},
        total_steps=10,
        idempotency_key="k1",
        request_hash="h1",
    )
    assert not created and again.id == first.id


def test_same_idempotency_key_with_another_request_is_a_conflict(add_job: AddJob) -> None:
    first = add_job(idempotency_key="k1", request_hash="h1")
    with pytest.raises(IdempotencyConflict) as raised:
        add_job(idempotency_key="k1", request_hash="h2")
    assert raised.value.job_id == first.id and raised.value.key == "k1"


def test_idempotency_keys_are_per_tenant_and_optional(
    session: Session, add_job: AddJob, add_dataset: Callable[..., Dataset]
) -> None:
    other = create_tenant(session, name="globex")
    their_dataset = add_dataset(other, content=b"theirs")
    mine = add_job(idempotency_key="k1", request_hash="h1")
    theirs = add_job(
        tenant_id=other.id, dataset_id=their_dataset.id, idempotency_key="k1", request_hash="h2"
    )
    assert theirs.id != mine.id
    assert add_job().id != add_job().id


def test_a_new_job_is_queued_with_its_spec(add_job: AddJob) -> None:
    job = add_job(name="digits", tags={"team": "vision"}, spec={"epochs": 3}, total_steps=30)
    assert (job.status, job.step, job.attempt, job.cancel_requested) == ("queued", 0, 0, False)
    assert (job.name, job.tags, job.spec, job.total_steps) == (
        "digits",
        {"team": "vision"},
        {"epochs": 3},
        30,
    )
    assert job.created_at.tzinfo is not None


def test_another_tenants_job_is_not_found(session: Session, add_job: AddJob) -> None:
    job = add_job()
    other = create_tenant(session, name="globex")
    assert get_job(session, tenant_id=job.tenant_id, job_id=job.id) is job
    assert get_job(session, tenant_id=other.id, job_id=job.id) is None
    assert list_jobs(session, tenant_id=other.id) == ([], None)


def test_count_queued_counts_only_queued_jobs_of_the_tenant(
    session: Session, add_job: AddJob, tenant: Tenant
) -> None:
    add_job()
    claimed(add_job())
    add_job().mark_cancelled()
    session.flush()
    assert count_queued(session, tenant_id=tenant.id) == 1


def test_concurrent_submissions_with_one_key_create_one_job(
    session: Session, engine: Engine
) -> None:
    factory = make_session_factory(engine)
    with session_scope(factory) as setup:
        tenant = create_tenant(setup, name="acme")
        dataset, _ = store_dataset(
            setup, dataset_id=new_id(), tenant_id=tenant.id, name="d",
            facts=DatasetFacts(sha256="0" * 64, size_bytes=1, n_rows=1, n_features=1,
                               task="regression", classes=None))
    barrier = threading.Barrier(2)

    def submit(_: int) -> tuple[str, bool]:
        with session_scope(factory) as own:
            barrier.wait()
            job, created = create_job(
                own, tenant_id=tenant.id, dataset_id=dataset.id, name="run", tags={},
                spec={}, total_steps=1, idempotency_key="k", request_hash="h",
            )  # fmt: skip
            return job.id, created

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(submit, range(2)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, True]


@pytest.fixture
def runs(session: Session, add_job: AddJob) -> list[Job]:
    """Seven finished runs with ties and missing values in every sort column."""
    start = utc_now()
    losses = [0.5, None, 0.2, 0.5, None, 0.9, 0.2]
    accuracies = [0.8, 0.7, None, 0.8, None, 0.1, 0.95]
    jobs = []
    for i, (loss, accuracy) in enumerate(zip(losses, accuracies, strict=True)):
        job = add_job(name=f"run-{i % 2}")
        job.created_at = start + timedelta(seconds=i // 2)  # pairs share a timestamp
        job.final_val_loss = loss
        job.final_val_accuracy = accuracy
        jobs.append(job)
    session.flush()
    return jobs


def expected_order(jobs: list[Job], order: str) -> list[str]:
    """The order list_jobs promises: by the value, then by id, NULLs last either way."""
    descending = order.startswith("-")
    column = {"created": "created_at"}.get(order.lstrip("-"), order.lstrip("-"))
    present = [job for job in jobs if getattr(job, column) is not None]
    missing = [job for job in jobs if getattr(job, column) is None]
    present.sort(key=lambda job: (getattr(job, column), job.id), reverse=descending)
    missing.sort(key=lambda job: job.id, reverse=descending)
    return [job.id for job in present + missing]


def all_pages(session: Session, tenant: Tenant, order: JobOrder, limit: int) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(20):
        page, cursor = list_jobs(
            session, tenant_id=tenant.id, order=order, limit=limit, cursor=cursor
        )
        assert len(page) <= limit
        ids += [job.id for job in page]
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize(
    "order",
    ["created", "-created", "final_val_loss", "-final_val_loss",
     "final_val_accuracy", "-final_val_accuracy"],
)  # fmt: skip
def test_pages_follow_the_order_without_gaps_or_repeats(
    session: Session, tenant: Tenant, runs: list[Job], order: JobOrder
) -> None:
    expected = expected_order(runs, order)
    for limit in (1, 2, 3, 7, 50):
        assert all_pages(session, tenant, order, limit) == expected, f"limit {limit}"


def test_newest_first_is_the_default_order(
    session: Session, tenant: Tenant, runs: list[Job]
) -> None:
    page, cursor = list_jobs(session, tenant_id=tenant.id)
    assert [job.id for job in page] == expected_order(runs, "-created") and cursor is None


def test_a_cursor_works_only_with_its_own_order(
    session: Session, tenant: Tenant, runs: list[Job]
) -> None:
    _, cursor = list_jobs(session, tenant_id=tenant.id, order="final_val_loss", limit=2)
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        list_jobs(session, tenant_id=tenant.id, order="-final_val_loss", cursor=cursor)
    for garbage in ("not a cursor", "W10", "WyJjcmVhdGVkIiwxLDJd"):
        with pytest.raises(InvalidCursor):
            list_jobs(session, tenant_id=tenant.id, order="created", cursor=garbage)


def test_filters_by_status_name_dataset_and_time(
    session: Session,
    tenant: Tenant,
    runs: list[Job],
    add_job: AddJob,
    add_dataset: Callable[..., Dataset],
) -> None:
    claimed(runs[0])
    session.flush()
    other_dataset = add_dataset(tenant, content=b"other data")
    on_other = add_job(dataset_id=other_dataset.id)

    def ids(**filters: object) -> set[str]:
        page, _ = list_jobs(session, tenant_id=tenant.id, **filters)  # type: ignore[arg-type]
        return {job.id for job in page}

    assert ids(status="running") == {runs[0].id}
    assert ids(name="run-1") == {job.id for job in runs if job.name == "run-1"}
    assert ids(dataset_id=other_dataset.id) == {on_other.id}
    window = ids(created_after=runs[2].created_at, created_before=runs[6].created_at)
    assert window == {runs[2].id, runs[3].id, runs[4].id, runs[5].id}
    assert ids(status="running", name="run-1") == set()


def test_filters_by_tags(session: Session, tenant: Tenant, add_job: AddJob) -> None:
    vision = add_job(tags={"team": "vision", "size": "s"})
    add_job(tags={"team": "nlp", "size": "s"})
    add_job(tags={})
    dotted = add_job(tags={"a.b": "c d", "team": "vision"})

    def ids(tag: dict[str, str]) -> set[str]:
        page, _ = list_jobs(session, tenant_id=tenant.id, tag=tag)
        return {job.id for job in page}

    assert ids({"team": "vision"}) == {vision.id, dotted.id}
    assert ids({"team": "vision", "size": "s"}) == {vision.id}
    assert ids({"team": "vision", "size": "m"}) == set()
    assert ids({"a.b": "c d"}) == {dotted.id}
    assert ids({"missing": "x"}) == set()
