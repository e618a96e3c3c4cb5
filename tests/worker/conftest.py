"""A migrated SQLite database and the settings a worker runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.blobs import BlobStore, blob_store
from db.engine import SessionFactory, make_engine, make_session_factory
from db.migrate import upgrade
from db.settings import Settings


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shardtrain.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture
def factory(database_url: str) -> SessionFactory:
    return make_session_factory(make_engine(database_url))


@pytest.fixture
def store(settings: Settings) -> BlobStore:
    """The blob store of ``settings``: a directory of the test's own."""
    return blob_store(settings)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Small batches of writes, a checkpoint at every write: the paths a long job takes.
    return Settings(data_dir=tmp_path, database_url=database_url, metrics_flush_steps=7,
                    metrics_flush_s=60.0, checkpoint_interval_s=0.0001)
