"""The embedded service (``LocalService``: API, in-process queue and worker) on a free port,
with a data directory of its own, for tests that drive it as a user would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from api.cli.local import LocalService
from db.engine import get_engine, get_session_factory
from db.settings import get_settings
from tests.utils.server import free_port

# Variables that would point the service, or the CLI, elsewhere than the test's own.
FOREIGN = ("SHARDTRAIN_DATABASE_URL", "SHARDTRAIN_BROKER_URL", "SHARDTRAIN_REDIS_URL",
           "SHARDTRAIN_RESULT_BACKEND", "SHARDTRAIN_URL", "SHARDTRAIN_TOKEN",
           "SHARDTRAIN_ENVIRONMENT", "SHARDTRAIN_BLOB_STORE", "SHARDTRAIN_BLOB_DIR")


def _clear_process_settings() -> None:
    get_engine.cache_clear()
    get_session_factory.cache_clear()
    get_settings.cache_clear()


@contextmanager
def local_service(data_dir: Path, **settings: str) -> Iterator[LocalService]:
    """The service of ``SHARDTRAIN_DATA_DIR=data_dir`` on a free port, until the block ends;
    ``settings`` are more of its settings, by name (``stall_timeout_s="1"``).

    The worker thread reads the process's settings (as a worker process would), so the
    environment is set for the block's duration and the cached settings and engine follow it.
    """
    with pytest.MonkeyPatch.context() as env:
        for name in FOREIGN:
            env.delenv(name, raising=False)
        env.setenv("SHARDTRAIN_DATA_DIR", str(data_dir))
        env.setenv("SHARDTRAIN_PORT", str(free_port()))
        # Small write batches: a short job's steps reach the database (and the events) in
        # several flushes, as a long job's do.
        env.setenv("SHARDTRAIN_METRICS_FLUSH_STEPS", "10")
        for name, value in settings.items():
            env.setenv(f"SHARDTRAIN_{name.upper()}", value)
        _clear_process_settings()
        try:
            with LocalService() as service:
                yield service
        finally:
            get_engine().dispose()
            _clear_process_settings()
