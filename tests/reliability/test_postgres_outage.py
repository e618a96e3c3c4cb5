"""Scenario 5: PostgreSQL unreachable for 20 s mid-job. The API answers 503 (not 500) while
it is, and the job completes afterwards with every step once.

The cluster reaches its database through a TCP proxy that the test cuts: the shared server
keeps running for everyone else."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from bench.cluster import Backends, Cluster
from bench.processes import wait_until
from bench.seaweed import SeaweedS3
from tests.e2e.checks import assert_every_step_once, assert_succeeded, digits_spec
from tests.reliability.conftest import start_cluster
from tests.reliability.helpers import http, wait_step
from tests.reliability.tcp_proxy import TcpProxy

pytestmark = pytest.mark.services

OUTAGE_S = 20.0
ENV = {
    "SHARDTRAIN_STALL_TIMEOUT_S": "4",
    "SHARDTRAIN_WATCHDOG_INTERVAL_S": "1",
    "SHARDTRAIN_CHECKPOINT_INTERVAL_S": "0.5",
}
# About 6 s of training here: still running when the database goes, a second in.
FIELDS = {"model": {"hidden": [512], "activation": "relu", "output": "softmax"},
          "epochs": 600, "batch_size": 128, "shards": 1, "max_workers": 1}


@pytest.fixture(scope="module")
def proxy(database_url: str) -> Iterator[TcpProxy]:
    url = make_url(database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def cluster(proxy: TcpProxy, database_url: str, redis_urls: tuple[str, str], seaweed: SeaweedS3,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    import redis

    for url in redis_urls:
        with redis.Redis.from_url(url) as connection:
            connection.flushdb()
    through_proxy = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    backends = Backends(through_proxy.render_as_string(False), *redis_urls, seaweed)
    cluster = start_cluster(1, backends, tmp_path_factory.mktemp("logs-postgres"), ENV)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_postgres_unreachable_for_20_s_mid_job(cluster: Cluster, digits_dataset: str,
                                               proxy: TcpProxy) -> None:
    job = cluster.client.submit(digits_spec(digits_dataset, **FIELDS))
    wait_step(cluster, job["id"], 1, 30.0)
    time.sleep(0.5)
    proxy.cut()
    cut_at = time.monotonic()
    answers = []
    try:
        with http(cluster) as client:
            while time.monotonic() - cut_at < OUTAGE_S:
                for path in (f"/v1/jobs/{job['id']}", "/v1/jobs", "/readyz"):
                    response = client.get(path)
                    answers.append(response.status_code)
                    assert response.status_code == 503, (path, response.text)
                    if path != "/readyz":
                        assert int(response.headers["Retry-After"]) > 0
                time.sleep(1.0)
    finally:
        proxy.restore()
    assert len(answers) >= 30
    wait_until("the API to be ready again",
               lambda: httpx.get(f"{cluster.url}/readyz").status_code == 200, 30.0)
    done = cluster.wait_job(job["id"], 60.0)
    assert_succeeded(done)
    assert done["attempt"] >= 2
    assert_every_step_once(cluster.metrics(job["id"]), done["progress"]["total_steps"])
    cluster.check_alive()
