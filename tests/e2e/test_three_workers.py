"""Three worker processes: one job on 1, 2 and 3 ranks, local SGD on 3, and a rank killed
mid-job."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from bench.cluster import Cluster
from bench.processes import wait_until
from tests.e2e.checks import (
    Reference,
    assert_every_step_once,
    assert_same_weights,
    assert_succeeded,
    digits_spec,
    reference_spec,
)

pytestmark = pytest.mark.services

WORKERS = 3
JOB_TIMEOUT_S = 90.0
# Long enough that every rank serves many steps; the leader waits for them before step 1.
PARALLEL_EPOCHS = 20
# Several seconds on 3 ranks: long enough to still run when a rank has been found and killed.
KILLED_RANK_EPOCHS = 120


def run_on(cluster: Cluster, spec: dict[str, Any]) -> dict[str, Any]:
    """The job of ``spec`` once it has ended, submitted to an idle cluster."""
    cluster.wait_idle()
    return cluster.wait_job(cluster.client.submit(spec)["id"], JOB_TIMEOUT_S)


def test_one_two_or_three_ranks_give_the_same_weights_and_history(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    results = {}
    for ranks in (1, 2, 3):
        spec = digits_spec(digits_dataset, name=f"ranks-{ranks}", epochs=PARALLEL_EPOCHS,
                           max_workers=ranks)
        job = run_on(cluster, spec)
        assert_succeeded(job)
        assert job["workers"] == ranks, f"asked for {ranks} ranks, ran on {job['workers']}"
        metrics = cluster.metrics(job["id"])
        assert_every_step_once(metrics, job["progress"]["total_steps"])
        results[ranks] = (cluster.client.weights(job["id"]), metrics)

    weights, metrics = results[1]
    assert_same_weights(weights, reference(reference_spec(spec)))
    for ranks in (2, 3):
        assert_same_weights(results[ranks][0], weights)
        assert results[ranks][1] == metrics, f"the history on {ranks} ranks differs"


def test_local_sgd_runs_its_rounds_on_three_ranks_and_equals_one_process(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    # Rounds of 4 steps (cut at each epoch's 43rd): every rank steps its shards' replicas and
    # momentum buffers alone, and only the round's ends cross between the processes.
    spec = digits_spec(digits_dataset, name="local-sgd", epochs=PARALLEL_EPOCHS, sync_every=4,
                       max_workers=3)
    job = run_on(cluster, spec)
    assert_succeeded(job)
    assert job["workers"] == 3
    assert_every_step_once(cluster.metrics(job["id"]), job["progress"]["total_steps"])
    assert_same_weights(cluster.client.weights(job["id"]), reference(reference_spec(spec)))


def test_a_killed_rank_is_dropped_and_the_job_still_succeeds(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    spec = digits_spec(digits_dataset, name="rank-killed", epochs=KILLED_RANK_EPOCHS,
                       max_workers=3)
    cluster.wait_idle()
    started = time.monotonic()
    job_id = cluster.client.submit(spec)["id"]

    # Mid-job: both ranks joined (the progress writes count them) and steps are being made.
    def training_on_three_ranks() -> list[dict[str, Any]] | None:
        job = cluster.client.job(job_id)
        assert job["status"] in ("queued", "running"), job
        ranks = cluster.rank_tasks(job_id)
        return ranks if job["workers"] == 3 and job["progress"]["step"] > 0 and \
            len(ranks) == 2 else None

    ranks = wait_until("the job to train on 3 ranks", training_on_three_ranks, 30.0,
                       context=cluster.describe)
    victim = ranks[0]["worker_pid"]
    # A pool process of one of this cluster's workers (their process groups are their pids).
    assert os.getpgid(victim) in {worker.pid for worker in cluster.worker_processes}
    step_at_kill = cluster.client.job(job_id)["progress"]["step"]
    os.kill(victim, signal.SIGKILL)

    job = cluster.wait_job(job_id, JOB_TIMEOUT_S)
    seconds = time.monotonic() - started
    assert_succeeded(job)
    assert step_at_kill < job["progress"]["total_steps"], "the rank was killed after the end"
    assert job["workers"] == 2, "the job's record still counts the rank it lost"
    assert_every_step_once(cluster.metrics(job_id), job["progress"]["total_steps"])
    assert_same_weights(cluster.client.weights(job_id), reference(reference_spec(spec)))
    # The leader noticed: it dropped the rank rather than ending before it had to.
    logs = "".join(process.tail(1_000_000) for process in cluster.worker_processes)
    assert f"of job {job_id} stopped answering" in logs
    # The worker whose pool process was killed lives on.
    cluster.check_alive()
    assert len(cluster.ping()) == WORKERS
    # ... and counts itself idle again, so that later jobs get all three ranks.
    wait_until("every worker to count itself idle", lambda: cluster.idle_set() ==
               set(cluster.ping()), 10.0, context=lambda: f"idle: {cluster.idle_set()}")
    print(f"\njob {job_id}: {job['progress']['total_steps']} steps on 3 ranks, one killed at "
          f"step {step_at_kill}; {seconds:.1f} s from submission to success "
          f"(running {job['timings']['running_s']:.1f} s)")
