"""Fixtures of the reliability scenarios: real compose processes on the local Redis,
PostgreSQL and SeaweedFS, as in ``tests/e2e``, whose helpers and shared fixtures
(``tests/e2e/fixtures.py``) they use.

Each module gets one cluster of ``WORKERS`` workers (default 1) with ``ENV`` (a module
constant, default none) added to the environment of every process, on a PostgreSQL database
of its own and on Redis databases 5 (broker) and 6 (data plane), flushed before each cluster
starts. Modules that need a broker or database they can break (a private redis-server, a
proxy) build their own ``Cluster`` with ``start_cluster``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis

from bench.cluster import Backends, Cluster
from bench.seaweed import SeaweedS3
from tests.e2e.fixtures import redis_db_url
from tests.utils.services import require

BROKER_DB, DATA_PLANE_DB = 5, 6


@pytest.fixture(scope="session")
def redis_urls() -> tuple[str, str]:
    """The broker and data-plane URLs of the reliability clusters."""
    urls = redis_db_url(BROKER_DB), redis_db_url(DATA_PLANE_DB)
    try:
        redis.Redis.from_url(urls[0], socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        require("Redis", error)
    return urls


def start_cluster(workers: int, backends: Backends, log_dir: Path,
                  env: Mapping[str, str] | None = None) -> Cluster:
    """A started cluster (stopped again if it fails to start)."""
    cluster = Cluster(workers, backends, log_dir)
    cluster.env.update(env or {})
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, redis_urls: tuple[str, str], database_url: str,
            seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for url in redis_urls:
        with redis.Redis.from_url(url) as connection:
            connection.flushdb()
    name = request.module.__name__.split(".")[-1]
    cluster = start_cluster(getattr(request.module, "WORKERS", 1),
                            Backends(database_url, *redis_urls, seaweed),
                            tmp_path_factory.mktemp(f"logs-{name}"),
                            getattr(request.module, "ENV", {}))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def digits_dataset(cluster: Cluster, digits_npz: Path) -> str:
    """The id of the digits, uploaded to this module's cluster."""
    dataset_id: str = cluster.client.upload_dataset(digits_npz)["id"]
    return dataset_id
