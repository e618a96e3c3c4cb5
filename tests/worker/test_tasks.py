"""The task enqueued by name, as the API does, and run by a real Celery worker thread
(Celery's own test worker, ``celery.contrib.testing``, on the in-process broker)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from db.blobs import BlobStore
from db.engine import SessionFactory, session_scope
from db.models import Job
from db.settings import Settings
from db.task_names import TRAIN_JOB
from tests.utils.data import blobs
from tests.utils.jobs import add_dataset, add_job
from worker import leader
from worker.app import make_celery
from worker.tasks import train_job


@pytest.fixture
def app(settings: Settings, factory: SessionFactory,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    monkeypatch.setattr(leader, "get_settings", lambda: settings)
    monkeypatch.setattr(leader, "get_session_factory", lambda: factory)
    app = make_celery(settings)  # memory:// broker, as in the embedded default
    with start_worker(app, pool="solo", perform_ping_check=False):
        yield app


def test_a_job_sent_by_task_name_is_trained(app: Celery, factory: SessionFactory,
                                            store: BlobStore) -> None:
    with session_scope(factory) as session:
        X, y = blobs(n=80, seed=0, dtype=np.float32)
        job_id = add_job(session, add_dataset(session, store, X, y),
                         {"epochs": 2, "batch_size": 16, "shards": 2}).id
    assert train_job.name == TRAIN_JOB  # the task the workers register
    client = Celery("client", broker=app.conf.broker_url)  # the API's side knows only the name
    client.send_task(TRAIN_JOB, args=[job_id])
    deadline = time.monotonic() + 30
    status = "queued"
    while time.monotonic() < deadline and status in ("queued", "running"):
        time.sleep(0.05)
        with session_scope(factory) as session:
            job = session.get(Job, job_id)
            assert job is not None
            status = job.status
    assert status == "succeeded"
