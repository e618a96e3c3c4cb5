"""End-to-end fixtures: real compose processes on the local Redis, PostgreSQL and SeaweedFS.

Each test module gets one cluster of ``WORKERS`` worker processes (a module constant, default
1; ``ENV``, settings for all of the module's processes), on a PostgreSQL database of its own,
on Redis databases 11 (broker) and 12 (data plane), flushed first (a lock file keeps a
second session on this machine waiting), and under a prefix of its own on the session's
SeaweedFS (``seaweed``). Without Redis, PostgreSQL or weed the tests skip, unless
``SHARDTRAIN_REQUIRE_SERVICES=1`` (CI), where they fail. The fixtures shared with the
reliability tests are in ``tests/e2e/fixtures.py``.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest
import redis

from bench.cluster import Backends, Cluster
from bench.processes import wait_until
from bench.seaweed import SeaweedS3
from tests.e2e.fixtures import redis_db_url
from tests.utils.services import REDIS_URL, require

BROKER_DB, DATA_PLANE_DB = 11, 12
LOCK_WAIT_S = 300.0


@pytest.fixture(scope="session")
def redis_backends() -> Iterator[tuple[str, str]]:
    """The broker and data-plane URLs, for this session alone; skips (or fails) when Redis
    does not answer.

    Every end-to-end session flushes the same two databases, so two of them at once (two
    engineers running the suite on one machine) would wreck each other's clusters: a lock file
    makes a session wait, a bounded time, for the other to finish."""
    urls = redis_db_url(BROKER_DB), redis_db_url(DATA_PLANE_DB)
    try:
        redis.Redis.from_url(urls[0], socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        require("Redis", error)
    parts = urlsplit(REDIS_URL)
    name = f"shardtrain-e2e-{parts.hostname}-{parts.port or 6379}-{BROKER_DB}-{DATA_PLANE_DB}.lock"
    with (Path(tempfile.gettempdir()) / name).open("a") as lock:
        wait_until("the other end-to-end session on this Redis to finish",
                   lambda: _locked(lock), LOCK_WAIT_S, interval=0.5)
        yield urls  # closing the file releases the lock (so does this process's death)


def _locked(file: IO[str]) -> bool:
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, redis_backends: tuple[str, str], database_url: str,
            seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """migrate, api and the module's ``WORKERS`` workers, started and ready; all stopped after."""
    broker_url, data_plane_url = redis_backends
    for url in redis_backends:
        with redis.Redis.from_url(url) as connection:
            connection.flushdb()
    workers: int = getattr(request.module, "WORKERS", 1)
    cluster = Cluster(workers, Backends(database_url, broker_url, data_plane_url, seaweed),
                      tmp_path_factory.mktemp(f"logs-{request.module.__name__.split('.')[-1]}"))
    cluster.env.update(getattr(request.module, "ENV", {}))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def digits_dataset(cluster: Cluster, digits_npz: Path) -> str:
    """The id of the digits, uploaded to this module's cluster through the client."""
    dataset = cluster.client.upload_dataset(digits_npz)
    assert (dataset["n_rows"], dataset["n_features"], dataset["task"]) == \
        (1797, 64, "classification"), dataset
    dataset_id: str = dataset["id"]
    return dataset_id


