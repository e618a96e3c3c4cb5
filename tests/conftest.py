"""Fixtures shared by every test package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from db.migrate import upgrade

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
