"""Scenarios 1, 2, 3 and 9: workers killed, stopped or hung mid-job; every job completes,
with every step's metrics once and the weights of an undisturbed run.

The test configuration makes recovery take seconds: a lease (stall timeout) of 4 s, a
watchdog pass every second, and the messages of a dead worker restored after 5 s."""

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
from tests.reliability.helpers import LONG_JOB, wait_step
from tests.reliability.workers import kill_worker, leader_of, start_worker, wait_workers

pytestmark = pytest.mark.services

WORKERS = 2
ENV = {
    "SHARDTRAIN_STALL_TIMEOUT_S": "4",
    "SHARDTRAIN_WATCHDOG_INTERVAL_S": "1",
    "SHARDTRAIN_VISIBILITY_TIMEOUT_S": "5",
    "SHARDTRAIN_BROKER_RESTORE_INTERVAL_S": "1",
    "SHARDTRAIN_CHECKPOINT_INTERVAL_S": "0.5",
}
JOB_TIMEOUT_S = 90.0
# A job of some seconds, on one rank (the faults are the leader's).
FIELDS = LONG_JOB
# Into the job before a fault: past its first checkpoints (written every 0.5 s).
RUN_BEFORE_FAULT_S = 1.5


def _run_a_while(cluster: Cluster, job_id: str) -> int:
    """The step the job has reached ``RUN_BEFORE_FAULT_S`` after its first one."""
    wait_step(cluster, job_id, 1, 30.0)
    time.sleep(RUN_BEFORE_FAULT_S)
    job = cluster.client.job(job_id)
    assert job["status"] == "running", job
    step: int = job["progress"]["step"]
    return step


def _completes(cluster: Cluster, job_id: str, spec: dict[str, Any],
               reference: Reference) -> dict[str, Any]:
    job = cluster.wait_job(job_id, JOB_TIMEOUT_S)
    assert_succeeded(job)
    assert_every_step_once(cluster.metrics(job_id), job["progress"]["total_steps"])
    assert_same_weights(cluster.client.weights(job_id), reference(reference_spec(spec)))
    return job


def _resumed_at(cluster: Cluster, job_id: str) -> list[int]:
    """The steps at which the attempts after the first started, from the worker logs."""
    steps = []
    for process in cluster.processes.started:
        for line in process.tail(1_000_000).splitlines():
            if job_id in line and "starts at step" in line and "attempt 1 " not in line:
                steps.append(int(line.split("starts at step ")[1].split()[0]))
    return steps


def test_sigkill_of_the_pool_process_mid_job(cluster: Cluster, digits_dataset: str,
                                             reference: Reference) -> None:
    spec = digits_spec(digits_dataset, **FIELDS)
    job = cluster.client.submit(spec)
    _, pid = leader_of(cluster, job["id"])
    _run_a_while(cluster, job["id"])
    os.kill(pid, signal.SIGKILL)
    done = _completes(cluster, job["id"], spec, reference)
    assert done["attempt"] >= 2
    assert min(_resumed_at(cluster, job["id"])) > 0  # from a checkpoint, not from step 0
    cluster.check_alive()


def test_sigkill_of_a_whole_worker_mid_job(cluster: Cluster, digits_dataset: str,
                                           reference: Reference) -> None:
    spec = digits_spec(digits_dataset, **FIELDS)
    job = cluster.client.submit(spec)
    worker, _ = leader_of(cluster, job["id"])
    _run_a_while(cluster, job["id"])
    kill_worker(cluster, worker)
    cluster.workers -= 1
    done = _completes(cluster, job["id"], spec, reference)
    assert done["attempt"] >= 2 and min(_resumed_at(cluster, job["id"])) > 0
    start_worker(cluster)
    wait_workers(cluster)


def test_sigterm_hands_the_job_back_at_once(cluster: Cluster, digits_dataset: str,
                                            reference: Reference) -> None:
    spec = digits_spec(digits_dataset, **FIELDS)
    job = cluster.client.submit(spec)
    worker, _ = leader_of(cluster, job["id"])
    _run_a_while(cluster, job["id"])
    worker.signal(signal.SIGTERM)
    stopped = time.monotonic()
    # The worker hands the job back and exits without finishing it ...
    assert worker.wait_exit(10.0), worker.describe()
    assert "handed back" in worker.tail(1_000_000)
    # ... and another worker resumes it at once, well before the stall timeout would.
    wait_until("another attempt to start", lambda: cluster.client.job(job["id"])["attempt"] >= 2,
               float(ENV["SHARDTRAIN_STALL_TIMEOUT_S"]), interval=0.05)
    print(f"SIGTERM: resumed by another worker {time.monotonic() - stopped:.2f} s later")
    cluster.worker_processes.remove(worker)
    cluster.workers -= 1
    done = _completes(cluster, job["id"], spec, reference)
    assert done["attempt"] == 2 and min(_resumed_at(cluster, job["id"])) > 0
    start_worker(cluster)
    wait_workers(cluster)


def test_all_workers_killed_for_10_s_resume_from_the_checkpoint(
        cluster: Cluster, digits_dataset: str, reference: Reference) -> None:
    spec = digits_spec(digits_dataset, **FIELDS)
    job = cluster.client.submit(spec)
    leader_of(cluster, job["id"])
    reached = _run_a_while(cluster, job["id"])
    for worker in list(cluster.worker_processes):
        kill_worker(cluster, worker)
    cluster.workers = 0
    time.sleep(10)
    assert cluster.client.job(job["id"])["status"] == "running"
    for _ in range(WORKERS):
        start_worker(cluster)
    wait_workers(cluster)
    done = _completes(cluster, job["id"], spec, reference)
    resumed = _resumed_at(cluster, job["id"])
    assert done["attempt"] >= 2 and resumed, resumed
    # From its last checkpoint (written every 0.5 s), not from step 0.
    assert min(resumed) > 0 and max(resumed) >= reached // 2, (resumed, reached)


def test_the_watchdog_takes_over_a_hung_leader(cluster: Cluster, digits_dataset: str,
                                               reference: Reference) -> None:
    spec = digits_spec(digits_dataset, **FIELDS)
    job = cluster.client.submit(spec)
    hung, pid = leader_of(cluster, job["id"])
    _run_a_while(cluster, job["id"])
    os.kill(pid, signal.SIGSTOP)  # alive but silent: nothing restores its message
    try:
        done = _completes(cluster, job["id"], spec, reference)
        assert done["attempt"] == 2
    finally:
        os.kill(pid, signal.SIGCONT)
    # Woken, the old leader finds its lease gone at its next write and stops writing.
    time.sleep(1.0)
    assert "lost the lease" in hung.tail(1_000_000)
    assert_every_step_once(cluster.metrics(job["id"]), done["progress"]["total_steps"])
