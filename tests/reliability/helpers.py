"""Small helpers of the reliability scenarios: raw HTTP, strict JSON, job specs."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bench.cluster import Cluster
from bench.processes import wait_until

ENDED = ("succeeded", "failed", "cancelled")
# A job of some seconds on one rank (the faults of these tests are the leader's); the same
# spec everywhere, so that its reference weights are computed once. It trains in about 5 s on
# a 2-core Zen 5 (512 hidden units and 120 epochs had ended there before a fault 1.5 s in).
LONG_JOB: dict[str, Any] = {"model": {"hidden": [2048], "activation": "relu",
                                      "output": "softmax"},
                            "epochs": 300, "shards": 1, "max_workers": 1}


def http(cluster: Cluster, token: str | None = None) -> httpx.Client:
    """A raw HTTP client of the cluster's API, with ``token`` (default: the cluster's)."""
    token = cluster.token if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=cluster.url, headers=headers, timeout=30.0)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(response: httpx.Response) -> Any:
    """The body as RFC 8259 JSON: NaN and Infinity, which Python would accept, fail."""
    return json.loads(response.text, parse_constant=_refuse_constant)


def field_locs(response: httpx.Response) -> list[list[str | int]]:
    """The ``loc`` of every refused field of a 422."""
    assert response.status_code == 422, (response.status_code, response.text)
    return [item["loc"] for item in strict_json(response)["detail"]]


def new_token(cluster: Cluster, tenant: str) -> str:
    """A token of ``tenant`` (created if new), from ``shardtrain token create``."""
    return cluster.run_cli("token", "create", "--tenant", tenant).strip().splitlines()[-1]


def wait_step(cluster: Cluster, job_id: str, step: int, timeout: float) -> dict[str, Any]:
    """The job once it has recorded step ``step`` or more (it must not end first)."""

    def reached() -> dict[str, Any] | None:
        job = cluster.client.job(job_id)
        assert job["status"] not in ENDED, job
        return job if job["progress"]["step"] >= step else None

    return wait_until(f"job {job_id} to reach step {step}", reached, timeout, interval=0.05,
                      context=cluster.describe)


def elapsed(since: float) -> float:
    return time.monotonic() - since
