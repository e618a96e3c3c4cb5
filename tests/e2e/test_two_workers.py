"""Two worker processes: jobs that each ask for more ranks than there are free workers.

Their ranks step over TCP alone, as workers on two hosts would (the other modules' workers,
on one host, share memory)."""

from __future__ import annotations

import pytest

from bench.cluster import Cluster
from tests.e2e.checks import (
    Reference,
    assert_every_step_once,
    assert_same_weights,
    assert_succeeded,
    digits_spec,
    reference_spec,
)

pytestmark = pytest.mark.services

WORKERS = 2
ENV = {"SHARDTRAIN_SHARED_MEMORY_DIR": ""}
JOB_TIMEOUT_S = 90.0


def test_two_jobs_submitted_together_both_finish(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    # Each leader holds a worker and asks for 4 ranks; neither may wait for the other's slot.
    cluster.wait_idle()
    specs = [digits_spec(digits_dataset, name=f"together-{i}", shards=4, max_workers=4,
                         seed=7 + i) for i in range(2)]
    ids = [cluster.client.submit(spec)["id"] for spec in specs]
    jobs = [cluster.wait_job(job_id, JOB_TIMEOUT_S) for job_id in ids]
    for spec, job in zip(specs, jobs, strict=True):
        assert_succeeded(job)
        assert job["workers"] in (1, 2), job["workers"]
        assert_every_step_once(cluster.metrics(job["id"]), job["progress"]["total_steps"])
        assert_same_weights(cluster.client.weights(job["id"]), reference(reference_spec(spec)))


def test_a_pair_over_tcp_alone_equals_one_process(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    cluster.wait_idle()
    spec = digits_spec(digits_dataset, name="pair-over-tcp", shards=4, max_workers=2)
    job = cluster.wait_job(cluster.client.submit(spec)["id"], JOB_TIMEOUT_S)
    assert_succeeded(job)
    assert job["workers"] == 2, job["workers"]
    assert_every_step_once(cluster.metrics(job["id"]), job["progress"]["total_steps"])
    assert_same_weights(cluster.client.weights(job["id"]), reference(reference_spec(spec)))
