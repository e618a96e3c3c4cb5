"""GET /v1/jobs/{id}, its metrics, the listing of runs, and cancelling."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.training import Trainer
from db.blobs import BlobStore
from db.engine import SessionFactory, session_scope
from db.models import Job
from db.queries.checkpoints import save_checkpoint
from db.queries.metrics import upsert_metrics
from tests.utils.api import refusal, submitted, upload
from tests.utils.data import blobs
from tests.utils.jobs import claimed


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs(n=120, features=4, classes=3)


@pytest.fixture
def dataset(client: TestClient, auth: dict[str, str],
            data: tuple[np.ndarray, np.ndarray]) -> str:
    return str(upload(client, auth, *data)["id"])


@pytest.fixture
def change(session_factory: SessionFactory) -> Callable[..., None]:
    """Applies ``how(job)`` to the stored job, as a worker would, and commits."""

    def apply(job_id: str, how: Callable[[Job], None]) -> None:
        with session_scope(session_factory) as session:
            job = session.get(Job, job_id)
            assert job is not None
            how(job)

    return apply


def succeed(job: Job, *, val_loss: float = 1.0, accuracy: float = 0.5) -> None:
    claimed(job)
    job.mark_succeeded(final_train_loss=val_loss, final_val_loss=val_loss,
                       final_val_accuracy=accuracy, best_val_loss=val_loss, best_step=18,
                       samples_per_s=100.0, seconds=1.0)


def fail(job: Job) -> None:
    claimed(job)
    job.mark_failed("diverged", "at step 3")


def record(factory: SessionFactory, job_id: str, rows: list[Any]) -> None:
    with session_scope(factory) as session:
        upsert_metrics(session, job_id=job_id, rows=rows)


def test_a_running_job_shows_progress_and_its_latest_metrics(
        client: TestClient, auth: dict[str, str], dataset: str,
        session_factory: SessionFactory, change: Callable[..., None]) -> None:
    job_id = submitted(client, auth, dataset)["id"]
    # Six steps per epoch; validation values at the epoch ends only.
    rows = [(s, (s - 1) // 6 + 1, 1.0 / s, 0.5 / s if s % 6 == 0 else None,
             0.1 * s if s % 6 == 0 else None) for s in range(1, 13)]
    record(session_factory, job_id, rows)

    def at_step_12(job: Job) -> None:
        claimed(job).record_stats(best_val_loss=None, best_step=None, samples_per_s=None,
                                  workers=2)
        job.mark_progress(2, 12)

    change(job_id, at_step_12)
    job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert (job["status"], job["workers"], job["attempt"]) == ("running", 2, 1)
    assert job["progress"] == {"epoch": 2, "epochs": 3, "step": 12, "total_steps": 18}
    assert job["latest"] == {"step": 12, "epoch": 2, "train_loss": 1 / 12,
                             "val_loss": 0.5 / 12, "val_accuracy": pytest.approx(1.2)}
    assert job["timings"]["started_at"] is not None and job["timings"]["finished_at"] is None
    assert job["timings"]["queued_s"] >= 0 and job["timings"]["running_s"] >= 0

    record(session_factory, job_id, [(13, 3, 0.07, None, None)])
    latest = client.get(f"/v1/jobs/{job_id}", headers=auth).json()["latest"]
    assert (latest["step"], latest["train_loss"], latest["val_loss"]) == (13, 0.07, 0.5 / 12)


def test_a_finished_job_shows_its_outcome(
        client: TestClient, auth: dict[str, str], dataset: str,
        data: tuple[np.ndarray, np.ndarray], finish: Callable[..., Trainer],
        change: Callable[..., None]) -> None:
    done = submitted(client, auth, dataset)["id"]
    finish(done, *data)
    job = client.get(f"/v1/jobs/{done}", headers=auth).json()
    assert job["status"] == "succeeded" and job["error"] is None
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 18
    assert 0 <= job["final"]["val_accuracy"] <= 1 and job["final"]["train_loss"] > 0
    assert job["best"] == {"val_loss": job["final"]["val_loss"], "step": 18}
    assert job["throughput"]["samples_per_s"] > 0
    assert job["timings"]["finished_at"] is not None

    failed = submitted(client, auth, dataset)["id"]
    change(failed, fail)
    job = client.get(f"/v1/jobs/{failed}", headers=auth).json()
    assert (job["status"], job["error"]) == ("failed", {"type": "diverged",
                                                        "message": "at step 3"})
    assert job["final"] is None


def test_metrics_are_columnar_incremental_and_downsampled(
        client: TestClient, auth: dict[str, str], dataset: str,
        session_factory: SessionFactory) -> None:
    job_id = submitted(client, auth, dataset)["id"]
    loss = {s: 1.0 / s for s in range(1, 101)}
    loss[50] = 9.0  # a spike that downsampling must keep
    record(session_factory, job_id, [(s, (s - 1) // 10 + 1, loss[s],
                                      loss[s] if s % 10 == 0 else None, None) for s in loss])
    url = f"/v1/jobs/{job_id}/metrics"
    columns = client.get(url, headers=auth).json()
    assert set(columns) == {"step", "epoch", "train_loss", "val_loss", "val_accuracy"}
    assert columns["step"] == list(range(1, 101))
    assert columns["val_loss"][:10] == [None] * 9 + [0.1]

    since = client.get(url, params={"since_step": 90}, headers=auth).json()
    assert since["step"] == list(range(91, 101)) and since["train_loss"][0] == loss[91]

    small = client.get(url, params={"max_points": 10}, headers=auth).json()
    assert len(small["step"]) <= 10
    assert {1, 50, 100} <= set(small["step"]) and small["step"] == sorted(small["step"])
    loc, _ = refusal(client.get(url, params={"max_points": 1}, headers=auth))
    assert loc == ["query", "max_points"]
    # Past what the database can bind: refused, not a server error.
    loc, _ = refusal(client.get(url, params={"since_step": 10**30}, headers=auth))
    assert loc == ["query", "since_step"]


def test_runs_are_filtered_ordered_and_paged(
        client: TestClient, auth: dict[str, str], dataset: str,
        change: Callable[..., None]) -> None:
    other = upload(client, auth, *blobs(n=60, features=4, classes=3, seed=9))["id"]
    jobs = [submitted(client, auth, dataset, name="a", tags={"team": "x", "env": "prod"}),
            submitted(client, auth, dataset, name="a", tags={"team": "x"}),
            submitted(client, auth, other, name="b", tags={"team": "y"}),
            submitted(client, auth, dataset, name="b")]
    ids = [job["id"] for job in jobs]
    outcomes = {ids[0]: (0.30, 0.9), ids[1]: (0.10, 0.7), ids[2]: (0.20, 0.8)}
    for job_id, (val_loss, accuracy) in outcomes.items():
        change(job_id, partial(succeed, val_loss=val_loss, accuracy=accuracy))

    def listed(**params: Any) -> list[str]:
        response = client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert listed() == ids[::-1]
    assert listed(order="created") == ids
    assert listed(status="queued") == [ids[3]]
    assert listed(name="a") == [ids[1], ids[0]]
    assert listed(tag="team:x") == [ids[1], ids[0]]
    assert listed(tag=["team:x", "env:prod"]) == [ids[0]]
    assert listed(dataset=other) == [ids[2]]
    middle = jobs[1]["timings"]["created_at"]
    assert listed(created_after=middle, order="created") == ids[1:]
    assert listed(created_before=middle, order="created") == ids[:1]
    assert listed(order="final_val_loss") == [ids[1], ids[2], ids[0], ids[3]]
    assert listed(order="-final_val_accuracy")[:3] == [ids[0], ids[2], ids[1]]

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"order": "final_val_loss", "limit": 1,
                                  **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params, headers=auth).json()
        pages += [item["id"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert pages == [ids[1], ids[2], ids[0], ids[3]]

    loc, _ = refusal(client.get("/v1/jobs", params={"tag": "team"}, headers=auth))
    assert loc == ["query", "tag", 0]  # the first of the repeated parameter
    naive = datetime.now(UTC).replace(tzinfo=None).isoformat()
    loc, _ = refusal(client.get("/v1/jobs", params={"created_after": naive}, headers=auth))
    assert loc == ["query", "created_after"]
    loc, _ = refusal(client.get("/v1/jobs", params={"order": "name"}, headers=auth))
    assert loc == ["query", "order"]


def test_cancelling_a_job_handed_back_ends_it_at_its_last_checkpoint(
        client: TestClient, auth: dict[str, str], dataset: str,
        session_factory: SessionFactory, store: BlobStore) -> None:
    job_id = submitted(client, auth, dataset)["id"]
    # Its leader recorded steps 1..6 and checkpointed step 4, then died; the watchdog handed
    # the job back to the queue, where the next attempt would resume from step 4.
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        claimed(job).mark_progress(2, 6)
        upsert_metrics(session, job_id=job_id,
                       rows=[(step, 1 + step // 4, 1.0 / step, None, None)
                             for step in range(1, 7)])
        save_checkpoint(session, store, job_id=job_id, step=4, state=b"state at step 4")
        job.status = "queued"
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).json()
    assert cancelled["status"] == "cancelled"
    assert (cancelled["progress"]["epoch"], cancelled["progress"]["step"]) == (2, 4)
    history = client.get(f"/v1/jobs/{job_id}/metrics", headers=auth).json()
    assert history["step"] == [1, 2, 3, 4]


def test_cancel(client: TestClient, auth: dict[str, str], dataset: str,
                change: Callable[..., None], enqueued: list[str]) -> None:
    queued = submitted(client, auth, dataset)["id"]
    response = client.post(f"/v1/jobs/{queued}/cancel", headers=auth)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["timings"]["finished_at"] is not None
    again = client.post(f"/v1/jobs/{queued}/cancel", headers=auth)
    assert again.status_code == 200 and again.json() == response.json()

    running = submitted(client, auth, dataset)["id"]
    change(running, claimed)
    response = client.post(f"/v1/jobs/{running}/cancel", headers=auth)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)

    for outcome, how in (("succeeded", succeed), ("failed", fail)):
        job_id = submitted(client, auth, dataset)["id"]
        change(job_id, how)
        _, message = refusal(client.post(f"/v1/jobs/{job_id}/cancel", headers=auth), 409)
        assert outcome in message
