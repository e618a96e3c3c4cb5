"""Scenario 4: Redis restarted mid-job, and Redis down when a job is submitted.

The cluster runs on a private redis-server (no persistence, like a restarted cache), started
and killed by this test; never on the machine's shared one."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.cluster import Backends, Cluster, free_port
from bench.compose import REPO_ROOT
from bench.processes import Process, wait_until
from bench.seaweed import SeaweedS3
from tests.e2e.checks import assert_every_step_once, assert_succeeded, digits_spec
from tests.reliability.conftest import start_cluster
from tests.reliability.helpers import http, wait_step
from tests.reliability.workers import wait_workers

pytestmark = pytest.mark.services

ENV = {
    "SHARDTRAIN_STALL_TIMEOUT_S": "4",
    "SHARDTRAIN_WATCHDOG_INTERVAL_S": "1",
    "SHARDTRAIN_CHECKPOINT_INTERVAL_S": "0.5",
}
# About 6 s of training here: the job behind it still waits when Redis restarts.
FIELDS = {"model": {"hidden": [512], "activation": "relu", "output": "softmax"},
          "epochs": 600, "batch_size": 128, "shards": 1, "max_workers": 1}


class PrivateRedis:
    """A redis-server on a free loopback port, killed and started again at will."""

    def __init__(self, log_dir: Path) -> None:
        program = shutil.which("redis-server")
        if program is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.argv = [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--daemonize", "no"]
        self.log_dir = log_dir
        self.process: Process | None = None
        self.starts = 0

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.starts += 1
        self.process = Process(f"redis{self.starts}", self.argv, {}, REPO_ROOT, self.log_dir)
        wait_until("the private Redis to answer", self._answers, 10.0)

    def _answers(self) -> bool:
        import redis

        return bool(redis.Redis.from_url(self.url(0), socket_connect_timeout=1).ping())

    def kill(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.wait_exit(5.0)
            self.process.kill_group_and_reap()
            self.process = None


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def cluster(private_redis: PrivateRedis, database_url: str, seaweed: SeaweedS3,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start_cluster(1, Backends(database_url, private_redis.url(0),
                                        private_redis.url(1), seaweed),
                            tmp_path_factory.mktemp("logs-redis"), ENV)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_redis_restarted_mid_job_the_jobs_complete(cluster: Cluster, digits_dataset: str,
                                                   private_redis: PrivateRedis) -> None:
    running = cluster.client.submit(digits_spec(digits_dataset, **FIELDS))
    wait_step(cluster, running["id"], 1, 30.0)
    # Behind it, on the one worker: its message waits in Redis, and the restart loses it.
    queued = cluster.client.submit(digits_spec(digits_dataset, epochs=2, shards=1,
                                               max_workers=1))
    private_redis.kill()
    private_redis.start()
    for job_id in (running["id"], queued["id"]):
        job = cluster.wait_job(job_id, 60.0)
        assert_succeeded(job)
        assert_every_step_once(cluster.metrics(job_id), job["progress"]["total_steps"])
    wait_workers(cluster)  # the worker reconnected, and answers


def test_redis_down_at_submission_is_a_503_with_retry_after(
        cluster: Cluster, digits_dataset: str, private_redis: PrivateRedis) -> None:
    spec = digits_spec(digits_dataset, epochs=1, shards=1, max_workers=1)
    private_redis.kill()
    try:
        with http(cluster) as client:
            refused = client.post("/v1/jobs", json=spec, timeout=30.0)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) > 0
            # Nothing was stored: no job waits in "queued" for a message that never left.
            assert client.get("/v1/jobs", params={"status": "queued"}).json()["items"] == []
            assert client.get("/readyz").status_code == 503
    finally:
        private_redis.start()
    wait_until("the API to be ready again",
               lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30.0)
    job = cluster.wait_job(cluster.client.submit(spec)["id"], 60.0)
    assert_succeeded(job)
