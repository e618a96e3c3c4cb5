"""Deleting a dataset: its row, then its rows in the store; never under a queued or running
job, never another tenant's; ended jobs keep their history and weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

import api.services.jobs as jobs_service
from core.training import Trainer
from db.blobs import BlobStore
from db.engine import SessionFactory, session_scope
from db.models import Dataset, Job
from db.queries.datasets import delete_dataset_row
from tests.utils.api import refusal, submit, submitted, upload
from tests.utils.data import blobs
from tests.utils.jobs import claimed


def test_a_dataset_goes_with_its_rows(client: TestClient, auth: dict[str, str],
                                      store: BlobStore) -> None:
    dataset = upload(client, auth, *blobs())
    kept = upload(client, auth, *blobs(seed=1))
    assert list(store.keys(f"datasets/{dataset['id']}/"))
    response = client.delete(f"/v1/datasets/{dataset['id']}", headers=auth)
    assert response.status_code == 204 and response.content == b""
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=auth).status_code == 404
    assert [d["id"] for d in client.get("/v1/datasets", headers=auth).json()["items"]] == [
        kept["id"]]
    assert list(store.keys(f"datasets/{dataset['id']}/")) == []
    assert list(store.keys(f"datasets/{kept['id']}/"))
    _, message = refusal(client.delete(f"/v1/datasets/{dataset['id']}", headers=auth), 404)
    assert message == f"no dataset {dataset['id']}"
    # The same data uploaded again is a new dataset.
    assert upload(client, auth, *blobs())["id"] != dataset["id"]


def test_another_tenants_dataset_is_a_404(client: TestClient, auth: dict[str, str],
                                          other_auth: dict[str, str], store: BlobStore) -> None:
    dataset = upload(client, auth, *blobs())
    _, message = refusal(client.delete(f"/v1/datasets/{dataset['id']}", headers=other_auth),
                         404)
    assert message == f"no dataset {dataset['id']}"
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=auth).status_code == 200
    assert list(store.keys(f"datasets/{dataset['id']}/"))


def test_a_dataset_in_use_by_a_queued_or_running_job_is_kept(
        client: TestClient, auth: dict[str, str], session_factory: SessionFactory,
        store: BlobStore) -> None:
    dataset = upload(client, auth, *blobs())
    job = submitted(client, auth, dataset["id"])
    _, message = refusal(client.delete(f"/v1/datasets/{dataset['id']}", headers=auth), 409)
    assert message == (f"dataset {dataset['id']} is in use by job {job['id']} (queued): "
                       "cancel it or let it end, then delete the dataset")
    with session_scope(session_factory) as session:
        row = session.get(Job, job["id"])
        assert row is not None
        claimed(row)
    _, message = refusal(client.delete(f"/v1/datasets/{dataset['id']}", headers=auth), 409)
    assert f"in use by job {job['id']} (running)" in message
    assert list(store.keys(f"datasets/{dataset['id']}/"))
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).status_code == 200
    with session_scope(session_factory) as session:  # the worker stops it at its next step
        row = session.get(Job, job["id"])
        assert row is not None
        row.mark_cancelled()
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=auth).status_code == 204


def test_an_ended_job_outlives_its_dataset(
        client: TestClient, auth: dict[str, str],
        finish: Callable[[str, np.ndarray, np.ndarray], Trainer]) -> None:
    X, y = blobs()
    dataset = upload(client, auth, X, y)
    job = submitted(client, auth, dataset["id"])
    finish(job["id"], X, y)
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=auth).status_code == 204
    read = client.get(f"/v1/jobs/{job['id']}", headers=auth)
    assert read.status_code == 200
    assert (read.json()["status"], read.json()["dataset"]) == ("succeeded", None)
    assert client.get(f"/v1/jobs/{job['id']}/weights", headers=auth).status_code == 200
    assert client.get(f"/v1/jobs/{job['id']}/metrics", headers=auth).status_code == 200
    # A new job cannot name the deleted dataset.
    loc, _ = refusal(submit(client, auth, dataset["id"]))
    assert loc == ["body", "dataset"]


def test_a_job_on_a_dataset_deleted_meanwhile_is_a_422(
        client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite, which takes no row lock, a deletion may commit between a submission's read
    of the dataset and its insert: the foreign key refuses the job, answered as no dataset."""
    dataset = upload(client, auth, *blobs())
    read = jobs_service.get_dataset

    def read_then_deleted(session: Session, **kwargs: Any) -> Dataset | None:
        found = read(session, **kwargs)
        delete_dataset_row(session, dataset_id=dataset["id"])
        return found

    monkeypatch.setattr(jobs_service, "get_dataset", read_then_deleted)
    loc, message = refusal(submit(client, auth, dataset["id"]))
    assert (loc, message) == (["body", "dataset"], f"dataset: you have no dataset {dataset['id']}")
