"""Engines and sessions: SQLite pragmas, UTC timestamps, cascades, and session scopes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session

from db.blobs import BlobStore
from db.engine import make_engine, make_session_factory, session_scope
from db.migrate import upgrade
from db.models import Checkpoint, Dataset, Job, Metric, Tenant
from db.queries.checkpoints import save_checkpoint
from db.queries.leases import requeue_stalled
from db.queries.metrics import upsert_metrics
from db.queries.tenants import create_tenant
from tests.utils.data import blobs
from tests.utils.jobs import add_dataset, add_job


def test_a_sqlite_engine_creates_its_directory_and_turns_on_wal_and_foreign_keys(
    sqlite_url: str,
) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_timestamps_come_back_aware_and_in_utc(session: Session, tenant: Tenant) -> None:
    paris = timezone(timedelta(hours=2))
    tenant.created_at = datetime(2024, 6, 1, 14, 30, 0, 123456, tzinfo=paris)
    session.flush()
    session.expire(tenant)
    assert tenant.created_at == datetime(2024, 6, 1, 12, 30, 0, 123456, tzinfo=UTC)
    assert tenant.created_at.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(session: Session, tenant: Tenant) -> None:
    tenant.created_at = datetime(2024, 6, 1, 12, 0)
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()


def test_deleting_a_tenant_deletes_everything_it_owns(
    session: Session, store: BlobStore, tenant: Tenant, add_job: Callable[..., Job]
) -> None:
    job = add_job()
    upsert_metrics(session, job_id=job.id, rows=[(1, 0, 0.5, None, None)])
    save_checkpoint(session, store, job_id=job.id, step=0, state=b"s")
    session.delete(tenant)
    session.flush()
    for model in (Tenant, Dataset, Job, Metric, Checkpoint):
        assert session.execute(select(func.count()).select_from(model)).scalar_one() == 0


def test_session_scope_commits_on_success_and_rolls_back_on_error(
    session: Session, engine: Engine
) -> None:
    factory = make_session_factory(engine)
    with session_scope(factory) as scoped:
        create_tenant(scoped, name="kept")
    with pytest.raises(RuntimeError), session_scope(factory) as scoped:
        create_tenant(scoped, name="discarded")
        raise RuntimeError("boom")
    names = session.execute(select(Tenant.name)).scalars().all()
    assert names == ["kept"]


@pytest.mark.services
def test_postgresql_ends_a_session_silent_inside_a_transaction(
    new_postgres_database: Callable[[], str],
) -> None:
    # As a leader stopped mid-write would: its locks must not outlive the timeout.
    engine = make_engine(new_postgres_database(), idle_in_transaction_s=0.3)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")  # a transaction is now open
            time.sleep(1.0)
            with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
                connection.exec_driver_sql("SELECT 1")
        with engine.connect() as connection:  # the pool replaces the ended connection
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.services
def test_a_hung_writer_cannot_hold_a_stalled_job_against_the_watchdog(
    new_postgres_database: Callable[[], str], store: BlobStore,
) -> None:
    url = new_postgres_database()
    upgrade(url)
    leader = make_engine(url, idle_in_transaction_s=0.5)
    watchdog = make_engine(url)
    try:
        with session_scope(make_session_factory(watchdog)) as session:
            X, y = blobs(n=40, seed=0)
            job = add_job(session, add_dataset(session, store, X, y),
                          {"epochs": 1, "batch_size": 8})
            job.status, job.attempt = "running", 1
            job.heartbeat_at = datetime.now(UTC) - timedelta(seconds=30)
            job_id = job.id
        # A leader stopped (SIGSTOP) between its update of the job and its commit.
        hung = leader.connect()
        hung.execute(update(Job).where(Job.id == job_id).values(step=3))
        started = time.monotonic()
        with session_scope(make_session_factory(watchdog)) as session:
            report = requeue_stalled(session, stall_timeout_s=10, max_attempts=5)
        # The row lock went with the hung session, after 0.5 s, not when the leader woke.
        assert report.requeued == [job_id]
        assert time.monotonic() - started < 5
        hung.invalidate()
    finally:
        leader.dispose()
        watchdog.dispose()
