"""The service against itself in one process: ``python -m bench.service [--quick]``.

1. Synchronisation rounds (bench/sync.py): shardtrain's exchange against a Celery chord.
2. The reference job of the data-parallel issue (784-128-10, 60,000 synthetic rows, global
   batch 1024, 4 shards, 3 epochs), and the same job with local SGD (rounds of 4 steps):
   wall time through the service (the processes of docker-compose.yml on the local Redis and
   PostgreSQL, one BLAS thread each) with 1 and 2 workers, beside the same spec trained in
   one process (``shardtrain train``'s engine, one BLAS thread).
   The service figure is the job's own life in the database, from submission to the end
   (``finished_at - created_at``), on a warm service: the workers have started and have
   trained one job on the dataset already, as they would in use. The one-process figure
   starts from the same point, the rows in memory: building the trainer (which checks the
   data and draws the initial weights) and training; the training alone is reported beside.
   The 1-worker and the 2-worker service run side by side, and every round runs each spec in
   one process, on one worker and on two in turn: the machine's slow moments (this host's
   speed moves by 10-20% within minutes) fall on all three alike. Medians over the rounds,
   with every run's figure beside them. Each round also measures what the machine allows two
   workers at best: two processes computing the halves' gradients side by side against one
   computing them all, running free (``two_core_ceiling``) and meeting at every step's end as
   a pair of ranks must (``lockstep_ceiling``), and the report says how much CPU time the
   hypervisor gave other guests during the run (``steal_pct``)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from api.client import WAIT_POLL_S
from bench.cluster import Backends, Cluster
from bench.core.data import synthetic
from bench.machine import cpu_ticks, machine_info, print_report, steal_percent
from bench.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedS3, seaweed_s3
from bench.sync import sync_results
from core.job import JobData, ShardSet
from core.npz import to_npz
from core.spec import TrainSpec
from core.training import Trainer
from worker.transport.links import SocketLink

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# (broker, data plane) of the 1-worker and of the 2-worker service
SERVICE_REDIS_DBS = ((7, 8), (11, 12))
REFERENCE_SPEC: dict[str, Any] = {
    "name": "reference", "model": {"hidden": [128], "activation": "relu", "output": "softmax"},
    "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 3,
    "batch_size": 1024, "seed": 0, "validation_fraction": 0.0, "shards": 4,
}
# The same job with local SGD: each rank steps its shards alone for rounds of 4 steps.
LOCAL_SGD_SPEC: dict[str, Any] = {**REFERENCE_SPEC, "name": "reference-local-sgd",
                                  "sync_every": 4}
PEERS_WALL_S = {"ray_train_warm": 13.7, "torch_ddp_2x1": 3.9, "torch_1_thread": 1.41}


# --- children: re-invocations of this module with one BLAS thread ---------------------------

def _spec_and_rows(data_file: Path, spec_json: str) -> tuple[TrainSpec, np.ndarray, np.ndarray]:
    """A child's spec (its service fields left out) and rows."""
    spec = TrainSpec.from_job_spec(json.loads(spec_json))
    with np.load(data_file) as data:
        return spec, data["X"], data["y"]


def child_training(data_file: Path, spec_json: str) -> None:
    """Print the seconds of the spec's whole job in this process, from the rows in memory to
    trained weights, and of the training alone."""
    spec, X, y = _spec_and_rows(data_file, spec_json)
    start = time.perf_counter()
    trained = Trainer(spec, X, y).run()
    print(time.perf_counter() - start, trained.seconds, flush=True)


def child_gradients(data_file: Path, spec_json: str, shards_json: str, peer_fd: str) -> None:
    """Once told to go (a line on stdin), compute the gradients of ``shards`` at every step
    of the spec, meeting the peer of ``peer_fd`` (a TCP connection; -1: none) at every step's
    end over a rank's link; print the seconds it took."""
    spec, X, y = _spec_and_rows(data_file, spec_json)
    job = JobData.prepare(spec, X, y)
    shards: list[int] = json.loads(shards_json)
    shard_set = ShardSet(job, shards)
    peer = (SocketLink(socket.socket(fileno=int(peer_fd)), 60.0) if peer_fd != "-1" else None)
    params = job.net.init_params(spec.seed, spec.model.init_scheme)
    outs = [job.net.empty() for _ in shards]
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for step in range(job.total_steps):
        for shard, out in zip(shards, outs, strict=True):
            shard_set.gradient(shard, step, params, out, 1.0)
        if peer is not None:
            peer.exchange([b"."], 60.0)
    print(time.perf_counter() - start, flush=True)


CHILDREN: dict[str, Callable[..., None]] = {"training": child_training,
                                           "gradients": child_gradients}


def one_thread_process(child: str, data_file: Path, spec: dict[str, Any], *args: str,
                       **popen: Any) -> subprocess.Popen[str]:
    """This module's ``child`` in a fresh process with one BLAS thread
    (``python -m bench.service --one CHILD DATA SPEC ARGS...``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.service", "--one", child, str(data_file),
         json.dumps(spec), *args],
        cwd=ROOT, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
        text=True, **popen)


def in_process_seconds(data_file: Path, spec: dict[str, Any]) -> tuple[float, float]:
    """Seconds of ``spec`` in a fresh single-threaded process, from the rows in memory to
    trained weights, and of the training alone."""
    process = one_thread_process("training", data_file, spec)
    out, _ = process.communicate(timeout=600)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, out)
    whole, training = out.strip().splitlines()[-1].split()
    return float(whole), float(training)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """The two ends of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        one = socket.create_connection(server.getsockname())
        other, _ = server.accept()
    return one, other


def gradient_seconds(data_file: Path, spec: dict[str, Any], blocks: list[list[int]], *,
                     lockstep: bool = False) -> list[float]:
    """Seconds that processes side by side, one per block of shards (one BLAS thread each),
    take to compute their blocks' gradients at every step of ``spec``, started together once
    each has its data: compute alone, no exchange and no service. ``lockstep`` (two blocks):
    the two meet at every step's end, one byte each way over a link, as exact averaging makes
    a pair do, so that each step lasts as long as the slower side's."""
    ends: list[socket.socket | None] = [None] * len(blocks)
    if lockstep:
        ends = list(tcp_pair())
    processes = [one_thread_process("gradients", data_file, spec, json.dumps(block),
                                    str(end.fileno() if end else -1), stdin=subprocess.PIPE,
                                    pass_fds=(end.fileno(),) if end else ())
                 for block, end in zip(blocks, ends, strict=True)]
    for end in ends:
        if end is not None:
            end.close()  # the processes hold their own
    for process in processes:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    seconds = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        seconds.append(float(out.strip()))
    return seconds


# --- the parent: services, rounds and the report --------------------------------------------

def two_core_ceilings(data_file: Path, spec: dict[str, Any]) -> tuple[float, float]:
    """How much faster two processes side by side compute half the gradients of every step
    each (the slower of the two) than one process computes them all, on this machine now:
    running free, and in lockstep. What 2 workers can gain over 1 at best, whatever their
    exchange costs: below 2 where the cores share caches, memory or a host with other guests,
    and lower in lockstep where a step takes one side longer than the other."""
    half = spec["shards"] // 2
    blocks = [list(range(half)), list(range(half, spec["shards"]))]
    # The one process runs between the pairs, so that a drift of the machine's speed weighs
    # on both ratios alike.
    free = gradient_seconds(data_file, spec, blocks)
    whole, = gradient_seconds(data_file, spec, [list(range(spec["shards"]))])
    lockstep = gradient_seconds(data_file, spec, blocks, lockstep=True)
    return whole / max(free), whole / max(lockstep)


def job_wall_seconds(cluster: Cluster, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    job = cluster.client.submit(spec)
    # Polled as often as the project's client waits: a read of the job costs the API about
    # 6 ms of CPU, which with both cores training is taken from a rank.
    done = cluster.wait_job(job["id"], timeout=600, poll_s=WAIT_POLL_S)
    assert done["status"] == "succeeded", done
    timings = done["timings"]
    created = datetime.fromisoformat(timings["created_at"])
    finished = datetime.fromisoformat(timings["finished_at"])
    return (finished - created).total_seconds(), done


class Service:
    """A warm deployment of ``workers`` worker processes on a database and Redis databases of
    its own: started, the dataset uploaded, and one short job run on it per worker process
    (each decodes the dataset once), as a service in use would be."""

    def __init__(self, workers: int, redis_dbs: tuple[int, int], log_dir: Path,
                 s3: SeaweedS3) -> None:
        self.workers = workers
        self.database = f"shardtrain_bench_{uuid4().hex[:12]}"
        broker, plane = (f"redis://127.0.0.1:6379/{db}" for db in redis_dbs)
        for url in (broker, plane):
            redis.Redis.from_url(url).flushdb()
        self.cluster = Cluster(workers, Backends(
            make_url(POSTGRES_ADMIN_URL).set(database=self.database).render_as_string(False),
            broker, plane, s3), log_dir / f"{workers}-workers")
        (log_dir / f"{workers}-workers").mkdir()
        self.cluster.env["SHARDTRAIN_MAX_BODY_BYTES"] = str(1 << 30)
        self.cluster.env["SHARDTRAIN_METRICS_FLUSH_S"] = "1.0"
        for setting in ("SHARDTRAIN_RANK_JOIN_S", "SHARDTRAIN_RANK_TIMEOUT_S"):
            self.cluster.env.pop(setting)  # the defaults, not the tests' short timeouts
        self.dataset = ""

    def start(self, admin: Engine, data: bytes, warm_up: dict[str, Any]) -> None:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.database}"'))
        self.cluster.start()
        self.dataset = self.cluster.client.upload_dataset(data, name="reference.npz")["id"]
        for _ in range(self.workers):
            self.run({**warm_up, "epochs": 1})

    def run(self, spec: dict[str, Any]) -> tuple[float, int | None]:
        """The job's wall time and the ranks it used; returns once every worker is idle."""
        wall, done = job_wall_seconds(self.cluster, {**spec, "dataset": self.dataset})
        self.cluster.wait_idle()
        return wall, done["workers"]

    def stop(self, admin: Engine) -> None:
        self.cluster.stop()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


def reference_results(quick: bool) -> list[dict[str, Any]]:
    """The reference jobs in one process and through services of 1 and 2 workers. Both
    services run side by side (idle when not in use) and each round runs every spec on each
    of the three in turn, so a slow moment of the machine weighs on all of them alike."""
    rows = 20_000 if quick else 60_000
    repeats = 1 if quick else 11
    specs = {"reference": REFERENCE_SPEC, "reference-local-sgd-4": LOCAL_SGD_SPEC}
    data = synthetic(rows)
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    runs: dict[str, dict[str, list[float]]] = {
        label: {"in_process": [], "training": [], "1": [], "2": []} for label in specs}
    ranks: dict[str, dict[int, int | None]] = {label: {} for label in specs}
    # By their names in the report: two processes running free, and in lockstep.
    ceilings: dict[str, list[float]] = {"two_core_ceiling": [], "lockstep_ceiling": []}
    # The services' blob store.
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp, \
            seaweed_s3(ACCESS_KEY, SECRET_KEY, bucket=BUCKET) as s3:
        data_file = Path(tmp) / "reference.npz"
        content = to_npz({"X": data.X, "y": data.y})
        data_file.write_bytes(content)
        services = {workers: Service(workers, dbs, Path(tmp), s3)
                    for workers, dbs in ((1, SERVICE_REDIS_DBS[0]), (2, SERVICE_REDIS_DBS[1]))}
        try:
            for service in services.values():
                service.start(admin, content, REFERENCE_SPEC)
            for round_ in range(repeats):
                free, lockstep = two_core_ceilings(data_file, REFERENCE_SPEC)
                ceilings["two_core_ceiling"].append(free)
                ceilings["lockstep_ceiling"].append(lockstep)
                for label, spec in specs.items():
                    whole, training = in_process_seconds(data_file, spec)
                    runs[label]["in_process"].append(whole)
                    runs[label]["training"].append(training)
                    for workers, service in services.items():
                        wall, used = service.run(spec)
                        runs[label][str(workers)].append(wall)
                        ranks[label][workers] = used
                    print(f"round {round_ + 1}, {label}: one process {whole:.3f} s, "
                          f"1 worker {runs[label]['1'][-1]:.3f} s, "
                          f"2 workers {runs[label]['2'][-1]:.3f} s", flush=True)
        finally:
            for service in services.values():
                service.stop(admin)
            admin.dispose()
    for key, values in ceilings.items():
        print(f"two processes side by side ({key}) computed the gradients "
              f"{np.median(values):.2f}x as fast as one (median; {min(values):.2f}x-"
              f"{max(values):.2f}x)", flush=True)
    # Steps in lockstep bound exact averaging; local SGD's ranks meet once a round.
    return [result for label, spec in specs.items()
            for result in _results(label, runs[label], ranks[label], rows, quick,
                                   ceilings if spec.get("sync_every", 1) == 1
                                   else {"two_core_ceiling": ceilings["two_core_ceiling"]})]


def _results(label: str, runs: dict[str, list[float]], ranks: dict[int, int | None],
             rows: int, quick: bool, ceilings: dict[str, list[float]]
             ) -> list[dict[str, Any]]:
    median = {name: float(np.median(values)) for name, values in runs.items()}
    whole, training = median["in_process"], median["training"]
    print(f"{label} in one process: {whole:.3f} s ({training:.3f} s training)", flush=True)
    results = []
    for workers in (1, 2):
        wall = median[str(workers)]
        extra: dict[str, Any] = {
            "ranks": ranks[workers], "ratio_vs_in_process": wall / whole,
            "in_process_training_s": training, "ratio_vs_in_process_training": wall / training,
            "rows": rows, "repeats": len(runs[str(workers)]),
            "runs_s": [round(value, 4) for value in runs[str(workers)]],
            "in_process_runs_s": [round(value, 4) for value in runs["in_process"]]}
        print(f"{label} through the service, {workers} worker(s): {wall:.3f} s "
              f"({ranks[workers]} rank(s)), {wall / whole:.2f}x the one-process time",
              flush=True)
        if workers == 2:
            extra["speedup_2_over_1"] = median["1"] / wall
            # Per round, the two services' jobs ran next to each other.
            extra["speedup_per_round"] = [round(one / two, 3) for one, two in
                                          zip(runs["1"], runs["2"], strict=True)]
            # What the machine allowed in each round: two processes' bare gradients against
            # one process's (``two_core_ceilings``), running free and in lockstep.
            for key, values in ceilings.items():
                extra[key] = float(np.median(values))
                extra[f"{key}_per_round"] = [round(c, 3) for c in values]
            print(f"{label}: 2 workers {median['1'] / wall:.2f}x one worker", flush=True)
        results.append({
            "config": f"{label}-{workers}-workers", "threads": 1, "metric": "wall_s",
            "better": "lower", "ours": wall,
            "peers": {"in_process": whole,
                      **(PEERS_WALL_S if label == "reference" and not quick else {})},
            "extra": extra})
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.service",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows, rounds and repeats")
    parser.add_argument("--one", nargs="+", metavar="ARG",
                        help=f"internal: run one child ({', '.join(CHILDREN)}) in this process")
    args = parser.parse_args(argv)
    if args.one:
        child, *child_args = args.one
        CHILDREN[child](Path(child_args[0]), *child_args[1:])
        return
    machine = machine_info(("celery", "redis", "hiredis"))
    start, ticks = time.monotonic(), cpu_ticks()
    results = sync_results(args.quick) + reference_results(args.quick)
    machine["steal_pct"] = steal = steal_percent(ticks)
    stolen = f"{steal:.1f}%" if steal is not None else "an unknown share"
    print(f"bench.service took {time.monotonic() - start:.0f} s; the hypervisor gave other "
          f"guests {stolen} of the CPU time", flush=True)
    print_report("service", machine, results)


if __name__ == "__main__":
    main()
