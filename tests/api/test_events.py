"""``GET /v1/jobs/{id}/events``: every step once, in order, then the final status; resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.admission import DatabaseGate
from api.cli.local import LocalService
from api.client import Client, Event, parse_sse
from api.routes.events import resume_after
from api.services import events as event_service
from core.npz import to_npz
from db.blobs import BlobStore
from db.engine import SessionFactory, session_scope
from db.models import Job
from db.queries.metrics import MetricColumns, read_metrics, upsert_metrics
from db.settings import Settings
from tests.utils.api import SPEC, refusal
from tests.utils.data import blobs
from tests.utils.jobs import add_dataset, add_job, claimed
from worker.leader import run_job

# 3 epochs of 8 steps on 160 rows (128 for training, batches of 16).
TOTAL_STEPS = 24


def _events(client: TestClient, path: str, headers: dict[str, str]) -> list[Event]:
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_sse(response.iter_lines()))


def _steps(events: list[Event]) -> list[int]:
    return [event.data["step"] for event in events if event.kind == "progress"]


@pytest.fixture
def finished_job(session_factory: SessionFactory, migrated_sqlite_url: str, tmp_path: Path,
                 auth: dict[str, str], store: BlobStore) -> str:
    """A job of tenant acme (the tenant of ``auth``), run to its end by the worker's code."""
    with session_scope(session_factory) as session:
        job = add_job(session, add_dataset(session, store, *blobs(n=160, seed=1)),
                      {k: v for k, v in SPEC.items() if k != "name"})
        job_id = job.id
    settings = Settings(data_dir=tmp_path, database_url=migrated_sqlite_url,
                        metrics_flush_steps=5)
    assert run_job(job_id, factory=session_factory, settings=settings) == "succeeded"
    return job_id


def test_a_finished_job_streams_every_step_in_order_then_its_final_status(
        client: TestClient, auth: dict[str, str], finished_job: str) -> None:
    events = _events(client, f"/v1/jobs/{finished_job}/events", auth)
    assert _steps(events) == list(range(1, TOTAL_STEPS + 1))
    assert [event.id for event in events if event.kind == "progress"] == [
        str(step) for step in range(1, TOTAL_STEPS + 1)]
    final = events[-1]
    assert final.kind == "status" and final.final and final.data["status"] == "succeeded"
    assert final.data["final"]["val_accuracy"] is not None
    progress = [event.data for event in events if event.kind == "progress"]
    assert [p["val_loss"] is not None for p in progress] == [
        step % 8 == 0 for step in range(1, TOTAL_STEPS + 1)]
    assert {(p["epochs"], p["total_steps"]) for p in progress} == {(3, TOTAL_STEPS)}


def test_last_event_id_resumes_after_that_step_and_wins_over_since_step(
        client: TestClient, auth: dict[str, str], finished_job: str) -> None:
    path = f"/v1/jobs/{finished_job}/events"
    assert _steps(_events(client, f"{path}?since_step=20", auth)) == [21, 22, 23, 24]
    resumed = _events(client, f"{path}?since_step=2", {**auth, "Last-Event-ID": "17"})
    assert _steps(resumed) == list(range(18, TOTAL_STEPS + 1))
    assert resumed[-1].final
    for bad in ("step-3", str(2**63)):
        refused = client.get(path, headers={**auth, "Last-Event-ID": bad})
        assert refused.status_code == 422 and "Last-Event-ID" in refused.text
    loc, _ = refusal(client.get(path, params={"since_step": 2**63}, headers=auth))
    assert loc == ["query", "since_step"]


def test_a_long_history_is_read_in_bounded_batches(
        session_factory: SessionFactory, finished_job: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def counted(session: Session, **kwargs: Any) -> MetricColumns:
        columns = read_metrics(session, **kwargs)
        reads.append(len(columns["step"]))
        return columns

    monkeypatch.setattr(event_service, "read_metrics", counted)

    async def stream() -> list[tuple[str | None, str | None]]:
        return [(event.event, event.id) async for event in event_service.job_events(
            gate=DatabaseGate(session_factory, slots=1, wait_s=1.0), job_id=finished_job,
            after=None, batch_rows=5)]

    sent = anyio.run(stream)
    assert sent == [*(("progress", str(step)) for step in range(1, TOTAL_STEPS + 1)),
                    ("status", None)]
    assert reads == [5, 5, 5, 5, 4]  # a short read tells that the history is caught up


def test_the_stream_needs_the_token_of_the_jobs_tenant(
        client: TestClient, other_auth: dict[str, str], finished_job: str) -> None:
    assert client.get(f"/v1/jobs/{finished_job}/events").status_code == 401
    assert client.get(f"/v1/jobs/{finished_job}/events", headers=other_auth).status_code == 404


def test_a_running_job_streams_rows_as_the_leader_writes_them(
        client: TestClient, auth: dict[str, str], session_factory: SessionFactory,
        store: BlobStore) -> None:
    rows = [(step, 1, 1.0 / step, None, None) for step in range(1, 13)]
    with session_scope(session_factory) as session:
        job = add_job(session, add_dataset(session, store, *blobs(n=160, seed=1)),
                      {"epochs": 3, "batch_size": 16})
        claimed(job)
        upsert_metrics(session, job_id=job.id, rows=rows[:5])
        job.mark_progress(1, 5)
        job_id = job.id
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth) as response:
        events = parse_sse(response.iter_lines())
        opened = next(events)
        assert opened.kind == "status" and opened.data["status"] == "running"
        # The request's own session (auth, the job) was closed before the stream began: an
        # open stream holds no pooled connection between its polls.
        assert session_factory.kw["bind"].pool.checkedout() == 0
        assert _steps([next(events) for _ in range(5)]) == [1, 2, 3, 4, 5]
        # The leader flushes the rest and ends the job, while the stream is open.
        with session_scope(session_factory) as session:
            upsert_metrics(session, job_id=job_id, rows=rows[5:])
            running = session.get(Job, job_id)
            assert running is not None
            running.mark_progress(2, 12)
            running.mark_cancelled()
        rest = list(events)
    assert _steps(rest) == list(range(6, 13))
    assert rest[-1].final and rest[-1].data["status"] == "cancelled"


def test_the_client_follows_a_live_job_and_resumes_without_gaps(live: LocalService) -> None:
    X, y = blobs(n=400, seed=2)
    with Client(live.url, live.token) as client:
        dataset = client.upload_dataset(to_npz({"X": X, "y": y}), name="blobs.npz")
        job = client.submit({**SPEC, "dataset": dataset["id"], "epochs": 6})
        total = job["progress"]["total_steps"]
        first: list[int] = []
        for event in client.events(job["id"]):
            if event.kind == "progress":
                first.append(event.data["step"])
            if len(first) == 7:
                break  # the client goes away mid-job, closing the connection
        rest = list(client.events(job["id"], since_step=first[-1]))
    assert first + _steps(rest) == list(range(1, total + 1))
    assert rest[-1].final and rest[-1].data["status"] == "succeeded"



def test_a_last_event_id_of_other_digits_is_refused() -> None:
    """Starlette reads header bytes as latin-1: b"\\xb2" arrives as "²", which str.isdigit
    takes and int() does not."""
    with pytest.raises(HTTPException) as info:
        resume_after(None, "\u00b2")
    assert info.value.status_code == 422
