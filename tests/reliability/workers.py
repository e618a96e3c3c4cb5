"""Killing, stopping and starting a cluster's worker processes, by pid."""

from __future__ import annotations

import contextlib
import os
import signal
from itertools import count

from bench.cluster import Cluster
from bench.compose import load_compose, service_argv
from bench.processes import Process, wait_until
from db.task_names import TRAIN_JOB

_numbers = count(100)


def start_worker(cluster: Cluster) -> Process:
    """One more worker process, with the cluster's environment, counted among its workers."""
    number = next(_numbers)
    process = cluster.processes.start(
        f"worker{number}", [*service_argv(load_compose(), "worker"), "-n", f"w{number}@%h"],
        cluster.env)
    cluster.worker_processes.append(process)
    return process


def kill_worker(cluster: Cluster, process: Process) -> None:
    """SIGKILL to the worker and its pool processes at once; it is no longer counted."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.kill_group_and_reap()
    cluster.worker_processes.remove(process)


def leader_of(cluster: Cluster, job_id: str, timeout: float = 15.0) -> tuple[Process, int]:
    """The worker process running ``shardtrain.train_job`` for ``job_id``, and the pid of
    the pool process that runs it."""

    def find() -> tuple[Process, int] | None:
        for name, tasks in cluster.active().items():
            for task in tasks:
                if task.get("name") == TRAIN_JOB and \
                        task.get("args", [None])[0] == job_id:
                    node = name.split("@", 1)[0]  # w<n>, started as process worker<n>
                    process = next(p for p in cluster.worker_processes
                                   if p.name == f"worker{node[1:]}")
                    return process, int(task["worker_pid"])
        return None

    return wait_until(f"a worker to lead job {job_id}", find, timeout, interval=0.1,
                      context=cluster.describe)


def wait_workers(cluster: Cluster, timeout: float = 60.0) -> None:
    """Until every counted worker answers a ping."""
    cluster.workers = len(cluster.worker_processes)
    wait_until(f"{cluster.workers} workers to answer", lambda: len(cluster.ping()) ==
               cluster.workers, timeout, context=cluster.describe)
