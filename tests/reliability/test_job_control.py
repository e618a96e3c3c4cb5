"""Scenarios 6, 7, 8, 11 (a NaN loss) and 14: duplicate deliveries, cancellation, divergence
and a pickled message, on two workers."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pytest

from bench.cluster import Cluster
from bench.processes import wait_until
from core.npz import to_npz
from db.task_names import TRAIN_JOB
from tests.e2e.checks import (
    Reference,
    assert_every_step_once,
    assert_same_weights,
    assert_succeeded,
    digits_spec,
    reference_spec,
)
from tests.reliability.helpers import LONG_JOB, http, strict_json, wait_step

pytestmark = pytest.mark.services

WORKERS = 2
# Metrics are written more often than a step of the slow job below takes, so a cancellation
# is seen at the end of the step in flight.
ENV = {"SHARDTRAIN_METRICS_FLUSH_S": "0.02", "SHARDTRAIN_CHECKPOINT_INTERVAL_S": "0.5"}
ALONE = {"shards": 1, "max_workers": 1}
# About 3 GFLOP a step: a tenth of a second or more on one BLAS thread.
SLOW = {"model": {"hidden": [2048, 2048], "activation": "relu", "output": "softmax"},
        "batch_size": 128, "epochs": 20, **ALONE}


def _strict(cluster: Cluster, path: str) -> Any:
    with http(cluster) as client:
        response = client.get(path)
    assert response.status_code == 200, response.text
    return strict_json(response)


def _worker_logs(cluster: Cluster) -> str:
    return "".join(p.tail(200_000) for p in cluster.worker_processes)


def test_cancel_stops_within_a_step_keeps_the_checkpoint_and_answers_the_same_again(
        cluster: Cluster, digits_dataset: str) -> None:
    job = cluster.client.submit(digits_spec(digits_dataset, **SLOW))
    wait_step(cluster, job["id"], 3, 60.0)
    requested = cluster.client.cancel(job["id"])
    seen = requested["progress"]["step"]
    started = time.monotonic()
    ended = cluster.wait_job(job["id"], 30.0)
    stopped_after_s = time.monotonic() - started
    assert ended["status"] == "cancelled", ended
    final = ended["progress"]["step"]
    # The write that reads the cancel runs while the next step trains, and the loop takes its
    # answer at that step's end: the job stops one step after the step in flight (seen + 1),
    # or two when the cancel landed while that step's write was reading the job.
    assert seen <= final <= seen + 3, (seen, final)
    print(f"cancel: seen at step {seen}, stopped at step {final}, {stopped_after_s:.2f} s later")
    # No metrics after it, and the checkpoint of that step kept.
    assert cluster.metrics(job["id"])["step"] == list(range(1, final + 1))
    latest = cluster.client.weights(job["id"], checkpoint="latest")
    at_step = cluster.client.weights(job["id"], checkpoint=str(final))
    for name in ("W1", "b1", "W3", "b3"):
        np.testing.assert_array_equal(latest[name], at_step[name])
    # Cancelling again answers the same.
    again = cluster.client.cancel(job["id"])
    assert (again["status"], again["progress"]) == ("cancelled", ended["progress"])


def test_divergence_fails_within_a_few_steps_with_valid_json_and_the_worker_carries_on(
        cluster: Cluster, digits_dataset: str, digits: tuple[np.ndarray, np.ndarray]) -> None:
    # A regression (mse, linear output): its loss overflows. (A softmax's cross-entropy is
    # clipped, so at this rate it stays finite, and the core does not call that divergence.)
    X, y = digits
    regression = cluster.client.upload_dataset(to_npz({"X": X, "y": y.astype(np.float64)}),
                                               name="digits-regression.npz")
    assert regression["task"] == "regression"
    spec = digits_spec(regression["id"], optimizer={"name": "sgd", "lr": 1e3}, loss="mse",
                       model={"hidden": [32], "activation": "relu", "output": "linear"},
                       **ALONE)
    job = cluster.wait_job(cluster.client.submit(spec)["id"], 60.0)
    assert job["status"] == "failed" and job["error"]["type"] == "diverged", job
    assert job["progress"]["step"] <= 10, job["progress"]
    # Every read answers RFC 8259 JSON, whatever the loss became.
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/metrics",
                 f"/v1/jobs/{job['id']}/metrics?max_points=3", "/v1/jobs?order=final_val_loss"):
        _strict(cluster, path)
    with http(cluster) as client:
        events = client.get(f"/v1/jobs/{job['id']}/events")
    assert events.status_code == 200 and "NaN" not in events.text and "Infinity" not in events.text
    # The last finite parameters are kept as a checkpoint.
    latest = cluster.client.weights(job["id"], checkpoint="latest")
    assert all(np.isfinite(array).all() for name, array in latest.items() if name[0] in "Wb")
    # The worker is healthy: the next job succeeds, and a finished job cannot be cancelled.
    healthy = cluster.wait_job(cluster.client.submit(
        digits_spec(digits_dataset, epochs=2, **ALONE))["id"], 60.0)
    assert_succeeded(healthy)
    with http(cluster) as client:
        assert client.post(f"/v1/jobs/{healthy['id']}/cancel").status_code == 409
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409


def test_a_duplicate_delivery_runs_no_second_leader(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    spec = digits_spec(digits_dataset, **LONG_JOB)
    job = cluster.client.submit(spec)
    wait_step(cluster, job["id"], 1, 60.0)
    # The same message again, twice, while the leader runs: the other worker takes them.
    for _ in range(2):
        cluster.celery.send_task(TRAIN_JOB, args=[job["id"]])
    done = cluster.wait_job(job["id"], 90.0)
    assert_succeeded(done)
    assert done["attempt"] == 1, done
    assert_every_step_once(cluster.metrics(job["id"]), done["progress"]["total_steps"])
    assert_same_weights(cluster.client.weights(job["id"]), reference(reference_spec(spec)))
    wait_until("the duplicates to be dropped",
               lambda: _worker_logs(cluster).count("dropping this duplicate delivery") >= 2,
               10.0)


class _Planted:
    """Unpickling this creates the file ``path``: proof that a worker ran the message."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def test_a_pickled_message_is_not_executed_and_the_worker_survives(
        cluster: Cluster, digits_dataset: str, tmp_path: Path) -> None:
    planted = tmp_path / "unpickled"
    with cluster.celery.connection_for_write() as connection:
        connection.Producer().publish(
            ((_Planted(planted),), {}, {}), routing_key="celery", exchange="",
            serializer="pickle",
            headers={"task": TRAIN_JOB, "id": str(uuid4()), "lang": "py"})
    wait_until("the workers to refuse the pickled message",
               lambda: "pickle" in _worker_logs(cluster), 15.0)
    assert not planted.exists()
    cluster.check_alive()
    assert len(cluster.ping()) == WORKERS
    job = cluster.wait_job(cluster.client.submit(
        digits_spec(digits_dataset, epochs=1, **ALONE))["id"], 60.0)
    assert_succeeded(job)
    assert not math.isnan(job["progress"]["step"])
