"""The embedded service's worker thread does what a worker process does besides running tasks."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from db.base import utc_now
from db.blobs import blob_store
from db.engine import get_session_factory, session_scope
from db.models import Job
from db.settings import get_settings
from tests.utils.data import blobs
from tests.utils.jobs import add_dataset, add_job
from tests.utils.live import local_service


def test_its_watchdog_fails_a_job_whose_leader_died(tmp_path: Path) -> None:
    """A job left ``running`` by a leader that died (here: never existed) is failed once it
    has stalled on its last attempt, as the worker processes' watchdog fails it."""
    with local_service(tmp_path, watchdog_interval_s="0.1", stall_timeout_s="0.5",
                       max_attempts="1"):
        with session_scope(get_session_factory()) as session:
            X, y = blobs(n=40, seed=0)
            job = add_job(session, add_dataset(session, blob_store(get_settings()), X, y),
                              {"epochs": 1, "batch_size": 8})
            job.status, job.attempt = "running", 1
            job.started_at = job.heartbeat_at = utc_now() - timedelta(seconds=60)
            job_id = job.id
        deadline = time.monotonic() + 20
        while True:
            with session_scope(get_session_factory()) as session:
                stalled = session.get(Job, job_id)
                assert stalled is not None
                if stalled.status != "running" or time.monotonic() > deadline:
                    break
            time.sleep(0.1)
        assert (stalled.status, stalled.error_type) == ("failed", "stalled")
