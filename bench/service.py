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
   data and draws the initial weights) and training; the training alone is reported beside."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.core import synthetic
from bench.machine import machine_info, print_report
from bench.sync import sync_results
from core.npz import to_npz
from tests.e2e.cluster import Backends, Cluster

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BROKER_URL, DATA_PLANE_URL = "redis://127.0.0.1:6379/7", "redis://127.0.0.1:6379/8"
REFERENCE_SPEC: dict[str, Any] = {
    "name": "reference", "model": {"hidden": [128], "activation": "relu", "output": "softmax"},
    "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 3,
    "batch_size": 1024, "seed": 0, "validation_fraction": 0.0, "shards": 4,
}
# The same job with local SGD: each rank steps its shards alone for rounds of 4 steps.
LOCAL_SGD_SPEC: dict[str, Any] = {**REFERENCE_SPEC, "name": "reference-local-sgd",
                                  "sync_every": 4}
PEERS_WALL_S = {"ray_train_warm": 13.7, "torch_ddp_2x1": 3.9, "torch_1_thread": 1.41}


def in_process_seconds(data_file: Path, spec: dict[str, Any], repeats: int
                       ) -> tuple[float, float]:
    """Median seconds of ``spec`` in a fresh single-threaded process, from the rows in memory
    to trained weights, and of the training alone."""
    code = (
        "import json, sys, time, numpy as np\n"
        "from core.spec import TrainSpec\nfrom core.training import Trainer\n"
        "spec = TrainSpec.from_dict({k: v for k, v in json.loads(sys.argv[2]).items()"
        " if k != 'name'})\n"
        "with np.load(sys.argv[1]) as d: X, y = d['X'], d['y']\n"
        "start = time.perf_counter()\n"
        "trained = Trainer(spec, X, y).run()\n"
        "print(time.perf_counter() - start, trained.seconds)\n")
    whole, training = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code, str(data_file), json.dumps(spec)],
                             cwd=ROOT, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
                             capture_output=True, text=True, check=True)
        both = out.stdout.strip().splitlines()[-1].split()
        whole.append(float(both[0]))
        training.append(float(both[1]))
    return float(np.median(whole)), float(np.median(training))


def job_wall_seconds(cluster: Cluster, spec: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    job = cluster.client.submit(spec)
    done = cluster.wait_job(job["id"], timeout=600)
    assert done["status"] == "succeeded", done
    timings = done["timings"]
    created = datetime.fromisoformat(timings["created_at"])
    finished = datetime.fromisoformat(timings["finished_at"])
    return (finished - created).total_seconds(), done


def service_seconds(workers: int, data: bytes, specs: dict[str, dict[str, Any]],
                    repeats: int, log_dir: Path) -> dict[str, tuple[float, int | None]]:
    """Per spec, the median job wall time on a warm cluster of ``workers``, and the ranks it
    used; the specs' jobs alternate, so that a slow moment of the machine weighs on each."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"shardtrain_bench_{uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    for url in (BROKER_URL, DATA_PLANE_URL):
        redis.Redis.from_url(url).flushdb()
    cluster = Cluster(workers, Backends(
        make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False),
        BROKER_URL, DATA_PLANE_URL), log_dir)
    cluster.env["SHARDTRAIN_MAX_BODY_BYTES"] = str(1 << 30)
    cluster.env["SHARDTRAIN_METRICS_FLUSH_S"] = "1.0"
    for setting in ("SHARDTRAIN_RANK_JOIN_S", "SHARDTRAIN_RANK_TIMEOUT_S"):
        cluster.env.pop(setting)  # the defaults, not the tests' short timeouts
    try:
        cluster.start()
        dataset = cluster.client.upload_dataset(data, name="reference.npz")
        full = {label: {**spec, "dataset": dataset["id"]} for label, spec in specs.items()}
        for _ in range(workers):  # every worker process decodes the dataset once
            job_wall_seconds(cluster, {**next(iter(full.values())), "epochs": 1})
            cluster.wait_idle()
        walls: dict[str, list[float]] = {label: [] for label in specs}
        ranks: dict[str, int | None] = {}
        for _ in range(repeats):
            for label, spec in full.items():
                wall, done = job_wall_seconds(cluster, spec)
                walls[label].append(wall)
                ranks[label] = done["workers"]
                cluster.wait_idle()
        return {label: (float(np.median(walls[label])), ranks[label]) for label in specs}
    finally:
        cluster.stop()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def reference_results(quick: bool) -> list[dict[str, Any]]:
    rows = 20_000 if quick else 60_000
    repeats = 1 if quick else 5
    specs = {"reference": REFERENCE_SPEC, "reference-local-sgd-4": LOCAL_SGD_SPEC}
    data = synthetic(rows)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        data_file = Path(tmp) / "reference.npz"
        content = to_npz({"X": data.X, "y": data.y})
        data_file.write_bytes(content)
        alone = {label: in_process_seconds(data_file, spec, repeats)
                 for label, spec in specs.items()}
        for label, (whole, training) in alone.items():
            print(f"{label} in one process: {whole:.3f} s ({training:.3f} s training)",
                  flush=True)
        walls: dict[str, dict[int, float]] = {label: {} for label in specs}
        for workers in (1, 2):
            measured = service_seconds(workers, content, specs, repeats, Path(tmp))
            for label, (wall, ranks) in measured.items():
                whole, training = alone[label]
                walls[label][workers] = wall
                print(f"{label} through the service, {workers} worker(s): {wall:.3f} s "
                      f"({ranks} rank(s)), {wall / whole:.2f}x the one-process time",
                      flush=True)
                extra: dict[str, Any] = {
                    "ranks": ranks, "ratio_vs_in_process": wall / whole,
                    "in_process_training_s": training,
                    "ratio_vs_in_process_training": wall / training, "rows": rows,
                    "repeats": repeats}
                if workers == 2:
                    extra["speedup_2_over_1"] = walls[label][1] / wall
                    print(f"{label}: 2 workers {walls[label][1] / wall:.2f}x one worker",
                          flush=True)
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
    args = parser.parse_args(argv)
    machine = machine_info(("celery", "redis", "hiredis"))
    start = time.monotonic()
    results = sync_results(args.quick) + reference_results(args.quick)
    print(f"bench.service took {time.monotonic() - start:.0f} s", flush=True)
    print_report("service", machine, results)


if __name__ == "__main__":
    main()
