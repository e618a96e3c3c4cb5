"""A finished run in a SQLite database, served by the real app on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from api.main import create_app
from db.blobs import blob_store
from db.engine import make_engine, make_session_factory, session_scope
from db.queries.tenants import create_tenant, issue_token
from db.settings import Settings
from tests.utils.data import blobs
from tests.utils.jobs import add_dataset, add_job
from tests.utils.server import serving
from worker.leader import run_job

# 3 epochs of 8 steps: a curve of 24 train points and 3 validation points.
SPEC = {"model": {"hidden": [8], "activation": "tanh"}, "optimizer": {"name": "adam", "lr": 0.01},
        "epochs": 3, "batch_size": 16, "shards": 2, "seed": 3, "validation_fraction": 0.2,
        "name": "blobs-page"}


@dataclass(frozen=True)
class FinishedRun:
    url: str
    token: str
    job_id: str
    steps: int


@pytest.fixture
def finished_run(migrated_sqlite_url: str, tmp_path: Path) -> Iterator[FinishedRun]:
    """A job trained to the end by the worker's own code, and the API serving it."""
    settings = Settings(data_dir=tmp_path, database_url=migrated_sqlite_url)
    engine = make_engine(migrated_sqlite_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        dataset = add_dataset(session, blob_store(settings),
                              *blobs(n=160, seed=1, dtype=np.float32))
        job = add_job(session, dataset, SPEC)
        job.tags = {"team": "ui"}
        job_id = job.id
        token = issue_token(session, tenant=create_tenant(session, name="acme"))
    assert run_job(job_id, factory=factory, settings=settings) == "succeeded"
    with serving(create_app(settings)) as url:
        yield FinishedRun(url=url, token=token, job_id=job_id, steps=24)
    engine.dispose()
