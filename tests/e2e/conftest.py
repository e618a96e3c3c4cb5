"""End-to-end fixtures: real compose processes on the local Redis and PostgreSQL.

Each test module gets one cluster of ``WORKERS`` worker processes (a module constant, default
1; ``ENV``, settings for all of the module's processes), on a PostgreSQL database of its own
and on Redis databases 11 (broker) and 12 (data plane), flushed first (a lock file keeps a
second session on this machine waiting). Without Redis or
PostgreSQL the tests skip, unless ``SHARDTRAIN_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import numpy as np
import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from core.npz import to_npz
from tests.deploy.compose_commands import REPO_ROOT
from tests.e2e.checks import Reference, Weights, layers
from tests.e2e.cluster import Backends, Cluster, console_script
from tests.e2e.processes import wait_until
from tests.utils.services import REDIS_URL, require

POSTGRES_ADMIN_URL = os.environ.get(
    "SHARDTRAIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BROKER_DB, DATA_PLANE_DB = 11, 12
REFERENCE_TIMEOUT_S = 120.0
LOCK_WAIT_S = 300.0


def redis_db_url(db: int) -> str:
    """The test Redis server's URL, on database ``db``."""
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """Autocommit engine on the server's maintenance database, to create and drop databases."""
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        engine.dispose()
        require("PostgreSQL", error)
    yield engine
    engine.dispose()


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
def database_url(postgres_admin: Engine) -> Iterator[str]:
    """A new, empty PostgreSQL database for this module, dropped afterwards."""
    name = f"shardtrain_e2e_{uuid4().hex[:12]}"
    with postgres_admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)
    finally:
        with postgres_admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, redis_backends: tuple[str, str], database_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """migrate, api and the module's ``WORKERS`` workers, started and ready; all stopped after."""
    broker_url, data_plane_url = redis_backends
    for url in redis_backends:
        with redis.Redis.from_url(url) as connection:
            connection.flushdb()
    workers: int = getattr(request.module, "WORKERS", 1)
    cluster = Cluster(workers, Backends(database_url, broker_url, data_plane_url),
                      tmp_path_factory.mktemp(f"logs-{request.module.__name__.split('.')[-1]}"))
    cluster.env.update(getattr(request.module, "ENV", {}))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, features scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="session")
def digits_npz(digits: tuple[np.ndarray, np.ndarray],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits as an .npz file (arrays ``X`` and ``y``), uploaded and trained on alike."""
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    X, y = digits
    path.write_bytes(to_npz({"X": X, "y": y}))
    return path


@pytest.fixture(scope="module")
def digits_dataset(cluster: Cluster, digits_npz: Path) -> str:
    """The id of the digits, uploaded to this module's cluster through the client."""
    dataset = cluster.client.upload_dataset(digits_npz)
    assert (dataset["n_rows"], dataset["n_features"], dataset["task"]) == \
        (1797, 64, "classification"), dataset
    dataset_id: str = dataset["id"]
    return dataset_id


@pytest.fixture(scope="session")
def reference(digits_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The final weights of ``shardtrain train`` for a job spec on the digits (once per spec).

    Run as a subprocess with one BLAS thread, as the workers run."""
    directory = tmp_path_factory.mktemp("reference")
    done: dict[str, Weights] = {}

    def train(spec: dict[str, Any]) -> Weights:
        key = json.dumps(spec, sort_keys=True)
        if key not in done:
            run = directory / f"run{len(done)}"
            run.mkdir()
            (run / "spec.json").write_text(key)
            result = subprocess.run(
                [console_script("shardtrain"), "train", str(run / "spec.json"),
                 "--data", str(digits_npz), "--out", str(run / "weights.npz")],
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, cwd=REPO_ROOT,
                capture_output=True, text=True, timeout=REFERENCE_TIMEOUT_S, check=False)
            assert result.returncode == 0, result.stderr
            with np.load(run / "weights.npz") as npz:
                done[key] = layers({name: npz[name] for name in npz.files})
        return done[key]

    return train
