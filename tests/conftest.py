"""Fixtures shared by every test package: migrated SQLite files, and one SeaweedFS S3 server
for the session."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedS3, seaweed_s3, weed_binary
from db.migrate import upgrade
from tests.utils.services import require


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 server with keys (unsigned requests are refused, as in a deployment) and
    the bucket ``BUCKET``, started on first use (3-4 s). Tests that use it are marked
    ``services``: without weed they skip, unless ``SHARDTRAIN_REQUIRE_SERVICES=1``."""
    if weed_binary() is None:
        require("SeaweedFS", FileNotFoundError(f"no weed beside {sys.executable} or on PATH"))
    with seaweed_s3(ACCESS_KEY, SECRET_KEY, bucket=BUCKET) as server:
        yield server

# Fixtures that the end-to-end and the reliability tests share.
pytest_plugins = ["tests.e2e.fixtures"]


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "shardtrain.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def migrated_sqlite_url(_migrated_sqlite_template: Path, tmp_path: Path) -> str:
    """The URL of a SQLite file of this test alone, at the latest migration.

    The migrations run once per session; each test gets a copy of the result, which takes
    a millisecond instead of a migration run.
    """
    path = tmp_path / "shardtrain.sqlite3"
    shutil.copyfile(_migrated_sqlite_template, path)
    return f"sqlite:///{path}"
