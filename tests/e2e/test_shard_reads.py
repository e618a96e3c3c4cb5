"""Two workers on a dataset of tens of MB: each reads from the store only the rows of its
shards (and the hold-out, for the leader), and the weights equal one worker's and one process's.

Each worker reaches the S3 store through a TCP proxy of its own, which counts the bytes the
store sent it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis

from bench.cluster import Backends, Cluster, console_script
from bench.compose import REPO_ROOT
from bench.seaweed import SeaweedS3
from core.npz import to_npz
from core.splits import n_train, shard_bounds
from db.blobs.datasets import chunk_rows_for
from tests.e2e.checks import assert_every_step_once, assert_succeeded, layers
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.services

ROWS, FEATURES = 40_000, 256  # 41 MB of float32: ten chunks of 4,096 rows
SPEC = {"name": "shard-reads", "model": {"hidden": [16], "activation": "relu"},
        "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 0.05}, "epochs": 1,
        "batch_size": 2000, "seed": 3, "validation_fraction": 0.1, "shards": 4}
JOB_TIMEOUT_S = 120.0
HTTP_SLACK = 256 * 1024  # headers, the manifest, retries: what is not rows


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    X = rng.random((ROWS, FEATURES), dtype=np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "wide.npz"
    path.write_bytes(to_npz({"X": X, "y": y}))
    return path


@pytest.fixture(scope="module")
def proxies(seaweed: SeaweedS3) -> Iterator[list[TcpProxy]]:
    endpoint = urlsplit(seaweed.endpoint)
    made = [TcpProxy((endpoint.hostname or "127.0.0.1", endpoint.port or 80))
            for _ in range(2)]
    yield made
    for proxy in made:
        proxy.close()


@pytest.fixture(scope="module")
def cluster(database_url: str, redis_backends: tuple[str, str], seaweed: SeaweedS3,
            proxies: list[TcpProxy], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:
    """The module's own cluster: its workers each reach the store through their proxy."""
    urls = redis_backends
    for url in urls:
        with redis.Redis.from_url(url) as connection:
            connection.flushdb()
    made = Cluster(2, Backends(database_url, *urls, seaweed), tmp_path_factory.mktemp("logs"))
    made.env["SHARDTRAIN_MAX_BODY_BYTES"] = str(256 << 20)
    made.env["SHARDTRAIN_SHARED_MEMORY_DIR"] = ""
    for i, proxy in enumerate(proxies, start=1):
        made.worker_env[i] = {"SHARDTRAIN_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
    try:
        made.start()
        yield made
    finally:
        made.stop()


def _reference(data: Path, spec: dict[str, object], directory: Path) -> dict[str, np.ndarray]:
    """The weights of ``shardtrain train`` on the same file and spec, in one process."""
    (directory / "spec.json").write_text(json.dumps(spec))
    subprocess.run([console_script("shardtrain"), "train", str(directory / "spec.json"),
                    "--data", str(data), "--out", str(directory / "w.npz")],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=120,
                   env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    with np.load(directory / "w.npz") as npz:
        return layers({name: npz[name] for name in npz.files})


def test_each_rank_reads_only_its_shards_and_the_weights_are_one_process(
        cluster: Cluster, data: Path, proxies: list[TcpProxy], tmp_path: Path) -> None:
    dataset = cluster.client.upload_dataset(data)
    assert dataset["n_rows"] == ROWS
    cluster.wait_idle()
    for proxy in proxies:
        proxy.downloaded = 0
    job = cluster.wait_job(cluster.client.submit(
        {**SPEC, "dataset": dataset["id"], "max_workers": 2})["id"], JOB_TIMEOUT_S)
    assert_succeeded(job)
    assert job["workers"] == 2, job["workers"]
    assert_every_step_once(cluster.metrics(job["id"]), job["progress"]["total_steps"])

    row_bytes = FEATURES * 4 + 4  # X float32, y int32 class indices
    chunk = chunk_rows_for(FEATURES * 4)
    train = n_train(ROWS, SPEC["validation_fraction"])  # type: ignore[arg-type]
    bounds = shard_bounds(train, 4)
    # The leader computes shards 0-1 and evaluates the hold-out; the other rank shards 2-3.
    # Each may read one chunk more at each end of each range it reads.
    leader = (bounds[2] + (ROWS - train) + 4 * chunk) * row_bytes
    rank = (bounds[4] - bounds[2] + 2 * chunk) * row_bytes
    read = sorted(proxy.downloaded for proxy in proxies)
    assert read[0] <= rank + HTTP_SLACK, (read, rank, leader)
    assert read[1] <= leader + HTTP_SLACK, (read, rank, leader)
    assert read[1] < 0.8 * ROWS * row_bytes  # neither read the dataset

    alone = cluster.wait_job(cluster.client.submit(
        {**SPEC, "dataset": dataset["id"], "max_workers": 1})["id"], JOB_TIMEOUT_S)
    assert_succeeded(alone)
    two, one = (layers(cluster.client.weights(j["id"])) for j in (job, alone))
    reference = _reference(data, SPEC, tmp_path)
    for name, array in reference.items():
        np.testing.assert_array_equal(two[name], array, err_msg=name)
        np.testing.assert_array_equal(one[name], array, err_msg=name)
