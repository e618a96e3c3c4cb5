"""Two worker processes: jobs that each ask for more ranks than there are free workers."""

from __future__ import annotations

import pytest

from tests.e2e.checks import (
    Reference,
    assert_every_step_once,
    assert_same_weights,
    assert_succeeded,
    digits_spec,
    reference_spec,
)
from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.services

WORKERS = 2
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
