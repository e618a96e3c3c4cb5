"""Scenarios 16 and 17: tenants see only their own jobs and datasets, tokens are checked and
stored hashed; concurrent submissions with Idempotency-Keys make one job per key, and a
tenant's cap on queued jobs leaves the other tenants alone."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from bench.cluster import Cluster
from tests.e2e.checks import assert_every_step_once, digits_spec
from tests.reliability.helpers import http, new_token, strict_json

pytestmark = pytest.mark.services

WORKERS = 2
QUEUED_CAP = 40
ENV = {"SHARDTRAIN_MAX_QUEUED_JOBS_PER_TENANT": str(QUEUED_CAP)}
SMALL = {"epochs": 1, "shards": 1, "max_workers": 1}


@pytest.fixture(scope="module")
def finished_job(cluster: Cluster, digits_dataset: str) -> str:
    job = cluster.client.submit(digits_spec(digits_dataset, **SMALL))
    job_id: str = cluster.wait_job(job["id"], 60.0)["id"]
    return job_id


def test_another_tenant_gets_404_and_filtered_lists(cluster: Cluster, digits_dataset: str,
                                                    finished_job: str) -> None:
    other = new_token(cluster, "tenant-b")
    with http(cluster, other) as b:
        for method, path in [
            ("GET", f"/v1/jobs/{finished_job}"),
            ("GET", f"/v1/jobs/{finished_job}/metrics"),
            ("GET", f"/v1/jobs/{finished_job}/events"),
            ("GET", f"/v1/jobs/{finished_job}/weights"),
            ("GET", f"/v1/jobs/{finished_job}/weights?checkpoint=latest"),
            ("POST", f"/v1/jobs/{finished_job}/cancel"),
            ("GET", f"/v1/datasets/{digits_dataset}"),
        ]:
            response = b.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
        predict = b.post(f"/v1/jobs/{finished_job}/predict", json={"X": [[0.0] * 64]})
        assert predict.status_code == 404
        # A's dataset is not B's to train on either.
        submit = b.post("/v1/jobs", json=digits_spec(digits_dataset, **SMALL))
        assert submit.status_code == 422 and "dataset" in submit.text
        assert strict_json(b.get("/v1/jobs"))["items"] == []
        assert strict_json(b.get("/v1/datasets"))["items"] == []
    # A still sees both, and its job was not cancelled.
    assert cluster.client.job(finished_job)["status"] == "succeeded"
    assert [job["id"] for job in cluster.client.runs()["items"]] == [finished_job]


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz", "bearer\x7f",
])
def test_a_missing_or_malformed_token_is_a_401(cluster: Cluster, finished_job: str,
                                               header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for path in ("/v1/jobs", f"/v1/jobs/{finished_job}", "/v1/datasets"):
        response = httpx.get(cluster.url + path, headers=headers)
        assert response.status_code == 401, (path, header, response.text)


def test_a_revoked_token_is_a_401_and_tokens_are_stored_hashed(cluster: Cluster) -> None:
    token = new_token(cluster, "tenant-revoked")
    with http(cluster, token) as client:
        assert client.get("/v1/jobs").status_code == 200
        assert cluster.run_cli("token", "revoke", token).strip() == "revoked"
        assert client.get("/v1/jobs").status_code == 401
    engine = create_engine(cluster.backends.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT * FROM api_tokens")).mappings().all()
    finally:
        engine.dispose()
    stored = {str(value) for row in rows for value in row.values()}
    assert token not in stored and cluster.token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_concurrent_submissions_make_one_job_per_idempotency_key(
        cluster: Cluster, digits_dataset: str) -> None:
    # 50 requests at once: 25 without a key, 25 sharing 5 keys (5 requests each).
    keys = [None] * 25 + [f"key-{i % 5}" for i in range(25)]
    spec = digits_spec(digits_dataset, **SMALL)

    def submit(key: str | None) -> httpx.Response:
        with http(cluster) as client:
            return client.post("/v1/jobs", json=spec,
                               headers={"Idempotency-Key": key} if key else {})

    with ThreadPoolExecutor(len(keys)) as pool:
        responses = list(pool.map(submit, keys))
    assert all(r.status_code in (200, 201) for r in responses), \
        [(r.status_code, r.text) for r in responses if r.status_code not in (200, 201)]
    by_key: dict[str, set[str]] = {}
    for key, response in zip(keys, responses, strict=True):
        if key is not None:
            by_key.setdefault(key, set()).add(strict_json(response)["id"])
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert sum(r.status_code == 201 for r in responses) == 30
    ids = {strict_json(r)["id"] for r in responses}
    assert len(ids) == 30
    for job_id in ids:
        job = cluster.wait_job(job_id, 90.0)
        assert job["status"] == "succeeded", job
        assert_every_step_once(cluster.metrics(job_id), job["progress"]["total_steps"])


def test_the_queued_cap_refuses_one_tenant_and_not_the_others(
        cluster: Cluster, digits_npz: Path) -> None:
    tokens = {name: new_token(cluster, name) for name in ("busy", "capped", "other")}
    busy, capped, other = tokens.values()
    datasets = {}
    for token in tokens.values():
        with http(cluster, token) as client:
            datasets[token] = client.post(
                "/v1/datasets", content=digits_npz.read_bytes(),
                headers={"Content-Type": "application/octet-stream"}).json()["id"]
    submitted: list[tuple[str, str]] = []

    def submit(token: str, **fields: Any) -> httpx.Response:
        with http(cluster, token) as client:
            response = client.post("/v1/jobs", json=digits_spec(datasets[token],
                                                                **{**SMALL, **fields}))
        if response.status_code == 201:
            submitted.append((token, response.json()["id"]))
        return response

    try:
        # Both workers busy for seconds past the submissions (cancelled below), so that the
        # capped tenant's jobs stay queued.
        for _ in range(WORKERS):
            assert submit(busy, epochs=5000).status_code == 201
        for _ in range(QUEUED_CAP):
            assert submit(capped).status_code == 201
        refused = submit(capped)
        assert refused.status_code == 429, refused.text
        assert "max_queued_jobs_per_tenant" in refused.text
        assert submit(other).status_code == 201
    finally:
        for token, job_id in submitted:
            with http(cluster, token) as client:
                client.post(f"/v1/jobs/{job_id}/cancel")
