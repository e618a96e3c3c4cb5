"""The app on a migrated SQLite file of its own, with small limits and a recording queue; and
the whole embedded service, live, for the tests that drive it through HTTP and the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.cli.local import LocalService
from api.deps import get_broker_check, get_enqueue
from api.main import create_app
from core.checkpoint import state_bytes
from core.spec import TrainSpec
from core.training import Trainer
from db.blobs import BlobStore, blob_store
from db.engine import SessionFactory, make_engine, make_session_factory, session_scope
from db.models import Job
from db.queries.checkpoints import save_checkpoint, save_final
from db.queries.tenants import create_tenant, issue_token
from db.settings import Settings
from tests.utils.jobs import claimed
from tests.utils.live import local_service

LIMITS: dict[str, Any] = {
    "max_body_bytes": 1024 * 1024,
    "max_rows": 1000,
    "max_features": 50,
    "max_params": 2000,
    "max_epochs": 1000,
    "max_compute": 20_000,
    "max_queued_jobs_per_tenant": 20,
}


@pytest.fixture
def session_factory(migrated_sqlite_url: str) -> Iterator[SessionFactory]:
    engine = make_engine(migrated_sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def enqueued() -> list[str]:
    """The job ids the app has sent to the queue, in order."""
    return []


@pytest.fixture
def make_app(migrated_sqlite_url: str, tmp_path: Any, session_factory: SessionFactory,
             enqueued: list[str]) -> Callable[..., FastAPI]:
    """An app with ``LIMITS``, updated by the keyword arguments, on this test's database."""

    def make(**limits: Any) -> FastAPI:
        settings = Settings(data_dir=tmp_path, database_url=migrated_sqlite_url,
                            **(LIMITS | limits))
        app = create_app(settings)
        app.dependency_overrides[get_enqueue] = lambda: enqueued.append
        app.dependency_overrides[get_broker_check] = lambda: lambda timeout_s: True
        return app

    return make


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def store(app: FastAPI) -> BlobStore:
    """The app's blob store: a directory of the test's own."""
    return blob_store(app.state.settings)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


@pytest.fixture
def make_client(make_app: Callable[..., FastAPI]) -> Callable[..., TestClient]:
    return lambda **limits: TestClient(make_app(**limits))


def _token(factory: SessionFactory, tenant: str) -> str:
    with session_scope(factory) as session:
        return issue_token(session, tenant=create_tenant(session, name=tenant))


@pytest.fixture
def auth(session_factory: SessionFactory) -> dict[str, str]:
    """Headers of tenant acme."""
    return {"Authorization": f"Bearer {_token(session_factory, 'acme')}"}


@pytest.fixture
def other_auth(session_factory: SessionFactory) -> dict[str, str]:
    """Headers of tenant globex, who must never see acme's data."""
    return {"Authorization": f"Bearer {_token(session_factory, 'globex')}"}


@pytest.fixture
def finish(session_factory: SessionFactory,
           store: BlobStore) -> Callable[[str, np.ndarray, np.ndarray], Trainer]:
    """Does a worker's part for a job: trains it on ``(X, y)`` in this process, stores the
    step-0 checkpoint and the final weights (which stand for the last step's checkpoint),
    and marks it succeeded."""

    def run(job_id: str, X: np.ndarray, y: np.ndarray) -> Trainer:
        with session_scope(session_factory) as session:
            job = session.get(Job, job_id)
            assert job is not None
            spec = TrainSpec.from_job_spec(job.spec)
            trainer = Trainer(spec, X, y, submitted=job.spec)
            save_checkpoint(session, store, job_id=job_id, step=0, state=state_bytes(trainer))
            claimed(job)
            result = trainer.run()
            save_final(session, store, job_id=job_id, step=result.steps,
                       data=trainer.model().to_npz())
            job.mark_progress(result.epochs, result.steps)
            job.mark_succeeded(
                final_train_loss=result.final_train_loss, final_val_loss=result.final_val_loss,
                final_val_accuracy=result.final_val_accuracy,
                best_val_loss=result.final_val_loss,
                best_step=result.steps if result.final_val_loss is not None else None,
                samples_per_s=result.samples_per_s, seconds=result.seconds)
        return trainer

    return run


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """The embedded service (API, queue, worker thread) with a data directory of its own,
    started once for the package: its worker is a Celery worker, slow to start and stop."""
    with local_service(tmp_path_factory.mktemp("live")) as service:
        yield service
