"""Engines and sessions: SQLite pragmas, UTC timestamps, cascades, and session scopes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from db.engine import make_engine, make_session_factory, session_scope
from db.models import Checkpoint, Dataset, Job, Metric, Tenant
from db.queries.checkpoints import save_checkpoint
from db.queries.metrics import upsert_metrics
from db.queries.tenants import create_tenant


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
    session: Session, tenant: Tenant, add_job: Callable[..., Job]
) -> None:
    job = add_job()
    upsert_metrics(session, job_id=job.id, rows=[(1, 0, 0.5, None, None)])
    save_checkpoint(session, job_id=job.id, step=0, state=b"s")
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
