"""One worker process: a job through the whole service, and 8 shards on a single slot."""

from __future__ import annotations

import numpy as np
import pytest

from bench.cluster import Cluster
from tests.e2e.checks import (
    STEPS_PER_EPOCH,
    Reference,
    assert_every_step_once,
    assert_same_weights,
    assert_succeeded,
    digits_spec,
    forward,
    reference_spec,
)

pytestmark = pytest.mark.services

WORKERS = 1
JOB_TIMEOUT_S = 60.0


def test_a_job_through_the_service_reproduces_shardtrain_train(
        cluster: Cluster, digits_dataset: str, digits: tuple[np.ndarray, np.ndarray],
        reference: Reference) -> None:
    spec = digits_spec(digits_dataset)
    submitted = cluster.client.submit(spec)
    assert submitted["status"] in ("queued", "running")  # a worker may have started already

    job = cluster.wait_job(submitted["id"], JOB_TIMEOUT_S)
    assert_succeeded(job)
    assert job["workers"] == 1
    assert job["progress"]["total_steps"] == spec["epochs"] * STEPS_PER_EPOCH
    assert_every_step_once(cluster.metrics(job["id"]), job["progress"]["total_steps"])

    weights = cluster.client.weights(job["id"])
    X, y = digits
    outputs = forward(weights, X)
    predicted = cluster.client.predict(job["id"], X)
    np.testing.assert_allclose(predicted["outputs"], outputs, rtol=1e-5, atol=1e-6)
    labels = weights["classes"][np.argmax(outputs, axis=1)]
    assert predicted["labels"] == labels.tolist()
    assert np.mean(labels == y) > 0.9  # it learnt something

    assert_same_weights(weights, reference(reference_spec(spec)))


def test_eight_shards_finish_on_one_worker_of_concurrency_one(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    # The leader may not wait for ranks that can only run once it has finished.
    cluster.wait_idle()
    spec = digits_spec(digits_dataset, shards=8, max_workers=8, epochs=3)
    job = cluster.wait_job(cluster.client.submit(spec)["id"], JOB_TIMEOUT_S)
    assert_succeeded(job)
    assert job["workers"] == 1
    assert_every_step_once(cluster.metrics(job["id"]), job["progress"]["total_steps"])
    assert_same_weights(cluster.client.weights(job["id"]), reference(reference_spec(spec)))
