"""Fixtures that the end-to-end and the reliability tests share, registered for every test
package (``tests/conftest.py``): PostgreSQL databases on the local server, the digits, and the
reference weights of ``shardtrain train``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bench.cluster import console_script
from bench.compose import REPO_ROOT
from core.npz import to_npz
from tests.e2e.checks import Reference, Weights, layers
from tests.utils.services import REDIS_URL, require

POSTGRES_ADMIN_URL = os.environ.get(
    "SHARDTRAIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REFERENCE_TIMEOUT_S = 120.0


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
