"""Databases for the db tests: migrated SQLite files and PostgreSQL databases on the real server.

PostgreSQL tests are marked ``services``; without a reachable server they skip, unless
``SHARDTRAIN_REQUIRE_SERVICES=1`` (CI), where they fail. The server is found at
``SHARDTRAIN_TEST_POSTGRES_URL`` (a maintenance database URL; default: local, user postgres).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.base import Base, new_id
from db.blobs import BlobStore
from db.blobs.local import LocalBlobStore
from db.engine import make_engine
from db.migrate import upgrade
from db.models import Dataset, Job, Tenant
from db.queries.datasets import DatasetFacts, store_dataset
from db.queries.jobs import create_job
from db.queries.tenants import create_tenant
from db.settings import get_settings

POSTGRES_ADMIN_URL = os.environ.get(
    "SHARDTRAIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An autocommit engine on the server's maintenance database, to create and drop databases."""
    engine = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        engine.dispose()
        message = f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {error}"
        if os.environ.get("SHARDTRAIN_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def new_postgres_database(postgres_admin: Engine) -> Iterator[Callable[[], str]]:
    """Creates empty, uniquely named databases; drops them all at the end of the session."""
    names: list[str] = []

    def create() -> str:
        name = f"shardtrain_test_{uuid4().hex[:12]}"
        with postgres_admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)

    yield create
    with postgres_admin.connect() as connection:
        for name in names:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet (in a directory that does not either)."""
    return f"sqlite:///{tmp_path / 'data' / 'shardtrain.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def empty_database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The URL of a database without any table, once per backend."""
    if request.param == "sqlite":
        return sqlite_url
    new_postgres_database: Callable[[], str] = request.getfixturevalue("new_postgres_database")
    return new_postgres_database()


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No ``SHARDTRAIN_*`` variables, and ``get_settings`` re-read before and after the test."""
    for name in list(os.environ):
        if name.startswith("SHARDTRAIN_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]
)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An engine on a migrated database, once per backend for the whole test session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'shardtrain.sqlite3'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on the migrated database; every table is emptied after the test."""
    with Session(engine, expire_on_commit=False) as session:
        yield session
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    """A blob store in a directory of the test's own."""
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def tenant(session: Session) -> Tenant:
    return create_tenant(session, name="acme")


@pytest.fixture
def add_dataset(session: Session) -> Callable[..., Dataset]:
    """The row of a small classification dataset of ``tenant`` whose content is ``content``
    (its blobs are the blob store's business, not these queries')."""

    def add(tenant: Tenant, *, content: bytes) -> Dataset:
        dataset, _ = store_dataset(
            session, dataset_id=new_id(), tenant_id=tenant.id, name="data.npz",
            facts=DatasetFacts(sha256=hashlib.sha256(content).hexdigest(),
                               size_bytes=len(content), n_rows=4, n_features=2,
                               task="classification", classes=[0, 1]))
        return dataset

    return add


@pytest.fixture
def dataset(tenant: Tenant, add_dataset: Callable[..., Dataset]) -> Dataset:
    return add_dataset(tenant, content=b"npz bytes of acme")


@pytest.fixture
def add_job(session: Session, tenant: Tenant, dataset: Dataset) -> Callable[..., Job]:
    """Adds a job of ``tenant`` on ``dataset``; keyword arguments override create_job's."""

    def add(**fields: Any) -> Job:
        arguments: dict[str, Any] = {
            "tenant_id": tenant.id,
            "dataset_id": dataset.id,
            "name": "run",
            "tags": {},
            "spec": {"epochs": 1},
            "total_steps": 10,
        }
        job, _ = create_job(session, **(arguments | fields))
        return job

    return add
