"""``GET /metrics``: Prometheus text that parses, with job counts that move as jobs run."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from api.cli.local import LocalService
from api.client import Client
from core.npz import to_npz
from tests.utils.api import SPEC, submitted, upload
from tests.utils.data import blobs


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_parse_and_count_jobs_and_requests_by_route(
        client: TestClient, auth: dict[str, str]) -> None:
    dataset = upload(client, auth, *blobs(n=100))
    submitted(client, auth, dataset["id"])
    client.get("/v1/jobs/unknown", headers=auth)
    response = client.get("/metrics")  # scrapers carry no token
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("shardtrain_jobs", (("status", "queued"),))] == 1
    assert found[("shardtrain_jobs", (("status", "succeeded"),))] == 0
    assert found[("shardtrain_steps_per_second", ())] == 0
    # Routes by template: one series for every job id, not one per id.
    assert found[("shardtrain_http_request_seconds_count",
                  (("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "404")))] == 1
    assert found[("shardtrain_http_request_seconds_count",
                  (("method", "POST"), ("route", "/v1/jobs"), ("status", "201")))] == 1


def test_job_counts_and_step_latency_move_when_a_job_runs(live: LocalService) -> None:
    before = samples(httpx.get(f"{live.url}/metrics").text)
    with Client(live.url, live.token) as client:
        X, y = blobs(n=160, seed=3)
        dataset = client.upload_dataset(to_npz({"X": X, "y": y}), name="blobs.npz")
        job = client.wait(client.submit({**SPEC, "dataset": dataset["id"]})["id"], poll_s=0.05)
    assert job["status"] == "succeeded"
    after = samples(httpx.get(f"{live.url}/metrics").text)

    def moved(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert moved("shardtrain_jobs", (("status", "succeeded"),)) == 1
    assert after[("shardtrain_jobs", (("status", "running"),))] == 0
    # The embedded worker shares the API's process, so its step histogram is served here:
    # one observation per step of the job.
    assert moved("shardtrain_step_seconds_count") == job["progress"]["total_steps"] == 24
    assert moved("shardtrain_step_seconds_sum") > 0
    assert after[("shardtrain_queue_depth", ())] == 0
