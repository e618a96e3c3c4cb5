"""Deleting a job: ended ones only, with their history, checkpoints, weights and blobs;
another tenant's job is a 404."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.training import Trainer
from db.blobs import BlobStore
from db.engine import SessionFactory
from db.models import Checkpoint, Metric, Weights
from db.queries.checkpoints import job_prefix
from db.queries.metrics import upsert_metrics
from tests.utils.api import refusal, submitted, upload
from tests.utils.data import blobs


def rows_of(factory: SessionFactory, job_id: str) -> dict[str, int]:
    with factory() as session:
        return {model.__tablename__: session.execute(
            select(func.count()).where(model.job_id == job_id)).scalar_one()
            for model in (Metric, Checkpoint, Weights)}


def test_an_ended_job_goes_with_everything_it_produced(
        client: TestClient, auth: dict[str, str], other_auth: dict[str, str],
        finish: Callable[..., Trainer], store: BlobStore,
        session_factory: SessionFactory) -> None:
    X, y = blobs(n=120, features=4, classes=3)
    dataset = upload(client, auth, X, y)["id"]
    job_id = submitted(client, auth, dataset)["id"]
    kept = submitted(client, auth, dataset)["id"]
    finish(job_id, X, y)
    with session_factory() as session:
        upsert_metrics(session, job_id=job_id, rows=[(1, 0, 0.5, None, None)])
        session.commit()
    assert all(rows_of(session_factory, job_id).values())
    assert list(store.keys(job_prefix(job_id)))
    assert client.delete(f"/v1/jobs/{job_id}", headers=other_auth).status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 404
    assert rows_of(session_factory, job_id) == {"metrics": 0, "checkpoints": 0, "weights": 0}
    assert list(store.keys(job_prefix(job_id))) == []
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 404
    assert client.get(f"/v1/jobs/{kept}", headers=auth).status_code == 200
    assert client.get(f"/v1/datasets/{dataset}", headers=auth).status_code == 200


def test_a_queued_or_running_job_is_not_deleted(client: TestClient, auth: dict[str, str],
                                                finish: Callable[..., Trainer]) -> None:
    X, y = blobs(n=120, features=4, classes=3)
    dataset = upload(client, auth, X, y)["id"]
    queued = submitted(client, auth, dataset)["id"]
    _, message = refusal(client.delete(f"/v1/jobs/{queued}", headers=auth), 409)
    assert f"job {queued} is queued: cancel it first" in message
    origin = submitted(client, auth, dataset)["id"]
    finish(origin, X, y)
    follower = submitted(client, auth, dataset, init=origin)["id"]
    _, message = refusal(client.delete(f"/v1/jobs/{origin}", headers=auth), 409)
    assert f"job {follower} (queued) starts from the weights of job {origin}" in message
    assert client.post(f"/v1/jobs/{follower}/cancel", headers=auth).status_code == 200
    assert client.delete(f"/v1/jobs/{origin}", headers=auth).status_code == 204
    assert client.delete(f"/v1/jobs/{follower}", headers=auth).status_code == 204
