"""POST /v1/jobs: validation naming the field, limits, idempotency, the queue."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_enqueue
from api.queue import EnqueueError
from core.training import Trainer
from db.engine import SessionFactory
from db.models import Job
from tests.utils.api import SPEC, refusal, submit, submitted, upload
from tests.utils.data import blobs, regression


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs(n=120, features=4, classes=3)


@pytest.fixture
def dataset(client: TestClient, auth: dict[str, str],
            data: tuple[np.ndarray, np.ndarray]) -> str:
    return str(upload(client, auth, *data)["id"])


def test_a_job_is_stored_with_its_whole_spec_then_enqueued(
        app: FastAPI, client: TestClient, auth: dict[str, str], dataset: str,
        session_factory: SessionFactory) -> None:
    visible_when_enqueued = []

    def enqueue(job_id: str) -> None:  # what a worker sees at that moment
        with session_factory() as session:
            visible_when_enqueued.append(session.get(Job, job_id) is not None)

    app.dependency_overrides[get_enqueue] = lambda: enqueue
    job = submitted(client, auth, dataset, tags={"team": "vision"})
    assert visible_when_enqueued == [True]
    assert (job["status"], job["dataset"], job["tags"]) == ("queued", dataset, {"team": "vision"})
    # 96 training rows after the 20 % hold-out: 6 batches of 16 per epoch.
    assert job["progress"] == {"epoch": 0, "epochs": 3, "step": 0, "total_steps": 18}
    spec = job["spec"]
    assert spec["optimizer"] == {"name": "adam", "lr": 0.01, "momentum": 0.0, "nesterov": False,
                                 "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    assert spec["model"] == {"hidden": [8], "activation": "tanh", "output": "softmax",
                             "init": "auto"}
    assert (spec["dtype"], spec["l2"], spec["sync_every"]) == ("float32", 0.0, 1)
    assert (spec["max_workers"], spec["init"], spec["dataset"]) == ("auto", None, dataset)
    assert job["latest"] is None and job["final"] is None and job["error"] is None


@pytest.mark.parametrize(("fields", "loc"), [
    ({"epochs": 0}, ["body", "epochs"]),
    ({"epochs": "many"}, ["body", "epochs"]),
    ({"model": {"hidden": [8, 0]}}, ["body", "model", "hidden", 1]),
    ({"model": {"hidden": [8], "width": 3}}, ["body", "model", "width"]),
    ({"optimizer": {"name": "sgd", "lr": -1}}, ["body", "optimizer", "lr"]),
    ({"optimizer": {"name": "rmsprop"}}, ["body", "optimizer", "name"]),
    ({"model": {"hidden": [8], "output": "linear"}}, ["body", "loss"]),
    ({"batch_size": 1, "shards": 2}, ["body", "batch_size"]),
    ({"validation_fraction": 0.95}, ["body", "validation_fraction"]),
    ({"max_workers": 0}, ["body", "max_workers"]),
    # Past what numpy's index arithmetic takes: refused here, not a worker's crash later.
    ({"batch_size": 10**20}, ["body", "batch_size"]),
    ({"epochs": 2**63}, ["body", "epochs"]),
    ({"model": {"hidden": [2**63]}}, ["body", "model", "hidden", 0]),
    # The other optimizer's setting, which would be ignored.
    ({"optimizer": {"name": "adam", "momentum": 0.9}}, ["body", "optimizer", "momentum"]),
    # A wrong JSON type is refused as sent, not converted.
    ({"epochs": True}, ["body", "epochs"]),
    ({"epochs": "3"}, ["body", "epochs"]),
    ({"epochs": 2.0}, ["body", "epochs"]),
    ({"optimizer": {"name": "sgd", "lr": "0.1"}}, ["body", "optimizer", "lr"]),
    ({"model": {"hidden": [True]}}, ["body", "model", "hidden", 0]),
    ({"max_workers": True}, ["body", "max_workers"]),
    ({"max_workers": "4"}, ["body", "max_workers"]),
    ({"tags": {"a:b": "c"}}, ["body", "tags", "a:b"]),
    ({"tenant": "globex"}, ["body", "tenant"]),  # fields a client must not set: unknown
    ({"status": "succeeded"}, ["body", "status"]),
    ({"id": "0" * 32}, ["body", "id"]),
])
def test_a_bad_field_is_a_422_naming_it(client: TestClient, auth: dict[str, str], dataset: str,
                                        fields: dict[str, Any], loc: list[Any]) -> None:
    error_loc, _ = refusal(submit(client, auth, dataset, **fields))
    assert error_loc[:len(loc)] == loc


def test_every_unknown_field_is_named(client: TestClient, auth: dict[str, str],
                                      dataset: str) -> None:
    response = submit(client, auth, dataset, tenant="globex", model={"hidden": [8], "width": 3})
    assert response.status_code == 422
    assert {(*e["loc"], e["msg"]) for e in response.json()["detail"]} == {
        ("body", "tenant", "unknown field 'tenant': not part of this request"),
        ("body", "model", "width", "unknown field 'width': not part of this request")}


@pytest.mark.parametrize(("path", "literal"), [
    (("optimizer", "lr"), "NaN"), (("l2",), "Infinity"), (("validation_fraction",), "1e309"),
    (("epochs",), "-Infinity"),
])
def test_non_finite_numbers_are_refused(client: TestClient, auth: dict[str, str], dataset: str,
                                        path: tuple[str, ...], literal: str) -> None:
    body: dict[str, Any] = {**SPEC, "dataset": dataset, "optimizer": dict(SPEC["optimizer"])}
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "@@"
    raw = json.dumps(body).replace('"@@"', literal)
    loc, _ = refusal(client.post("/v1/jobs", content=raw,
                                 headers={**auth, "Content-Type": "application/json"}))
    assert loc == ["body", *path]


@pytest.mark.parametrize(("fields", "loc", "message"), [
    ({"epochs": 1001}, ["body", "epochs"], "max_epochs=1000"),
    ({"model": {"hidden": [64, 64]}}, ["body", "model", "hidden"], "max_params=2000"),
    ({"epochs": 300}, ["body", "epochs"], "max_compute=20000"),
    ({"shards": 97, "batch_size": 128}, ["body", "shards"], "96 training rows"),
])
def test_each_limit_is_a_422_naming_field_and_limit(
        client: TestClient, auth: dict[str, str], dataset: str, fields: dict[str, Any],
        loc: list[str], message: str) -> None:
    error_loc, text = refusal(submit(client, auth, dataset, **fields))
    assert error_loc == loc and message in text


def test_the_output_width_comes_from_the_dataset(make_client: Callable[..., TestClient],
                                                 auth: dict[str, str]) -> None:
    client = make_client(max_params=49)
    # Two regression targets: 3*8+8 + 8*2+2 = 50 parameters, one above the limit.
    targets = upload(client, auth, *regression(n=50, features=3, outputs=2))["id"]
    linear = {"model": {"hidden": [8], "output": "linear"}, "loss": "mse"}
    _, message = refusal(submit(client, auth, targets, **linear))
    assert "3-8-2 has 50 parameters" in message
    # Two classes on a sigmoid output: one unit, 4*8+8 + 8*1+1 = 49 parameters.
    classes = upload(client, auth, *blobs(n=50, features=4, classes=2))["id"]
    submitted(client, auth, classes, model={"hidden": [8], "output": "sigmoid"},
              loss="binary_cross_entropy")
    _, message = refusal(submit(client, auth, targets, loss="cross_entropy"))
    assert "regression" in message


def test_the_dataset_must_be_the_tenants(client: TestClient, auth: dict[str, str],
                                         other_auth: dict[str, str], dataset: str) -> None:
    for headers, dataset_id in ((other_auth, dataset), (auth, "0" * 32)):
        loc, message = refusal(submit(client, headers, dataset_id))
        assert loc == ["body", "dataset"] and dataset_id in message


def test_an_idempotency_key_replays_the_first_job(
        client: TestClient, auth: dict[str, str], other_auth: dict[str, str], dataset: str,
        enqueued: list[str]) -> None:
    key = {**auth, "Idempotency-Key": "retry-1"}
    first = submit(client, key, dataset)
    assert first.status_code == 201
    # The same request, one default spelled out: still the same request.
    replay = submit(client, key, dataset, sync_every=1)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    assert enqueued == [first.json()["id"]]
    loc, _ = refusal(submit(client, key, dataset, epochs=4))
    assert loc == ["header", "Idempotency-Key"]
    # Keys are per tenant.
    theirs = upload(client, other_auth, *blobs(n=120, features=4, classes=3))["id"]
    assert submit(client, {**other_auth, "Idempotency-Key": "retry-1"}, theirs).status_code == 201


def test_queued_jobs_are_capped_per_tenant(make_client: Callable[..., TestClient],
                                           auth: dict[str, str]) -> None:
    client = make_client(max_queued_jobs_per_tenant=2)
    dataset = upload(client, auth, *blobs())["id"]
    first = submit(client, {**auth, "Idempotency-Key": "k"}, dataset)
    submitted(client, auth, dataset)
    _, message = refusal(submit(client, auth, dataset), 429)
    assert "max_queued_jobs_per_tenant" in message
    replay = submit(client, {**auth, "Idempotency-Key": "k"}, dataset)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    assert len(client.get("/v1/jobs", headers=auth).json()["items"]) == 2


def test_init_starts_from_an_earlier_jobs_final_weights(
        client: TestClient, auth: dict[str, str], dataset: str,
        data: tuple[np.ndarray, np.ndarray], finish: Callable[..., Trainer]) -> None:
    earlier = submitted(client, auth, dataset)["id"]
    loc, message = refusal(submit(client, auth, dataset, init=earlier))
    assert loc == ["body", "init"] and "no final weights" in message
    finish(earlier, *data)
    later = submitted(client, auth, dataset, init=earlier)
    assert later["spec"]["init"] == earlier
    loc, message = refusal(submit(client, auth, dataset, init=earlier, model={"hidden": [5]}))
    assert loc == ["body", "init"] and "shape" in message
    loc, _ = refusal(submit(client, auth, dataset, init="0" * 32))
    assert loc == ["body", "init"]


def test_a_job_the_broker_refuses_is_not_kept(app: FastAPI, client: TestClient,
                                              auth: dict[str, str], dataset: str) -> None:
    def unreachable(job_id: str) -> None:
        raise EnqueueError("connection refused")

    app.dependency_overrides[get_enqueue] = lambda: unreachable
    response = submit(client, auth, dataset)
    _, message = refusal(response, 503)
    assert "retry" in message and int(response.headers["Retry-After"]) > 0
    assert client.get("/v1/jobs", headers=auth).json()["items"] == []
