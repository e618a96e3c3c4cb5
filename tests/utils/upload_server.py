"""Apps for a real uvicorn process (``uvicorn --factory``), on the environment's settings,
with a stand-in for the streaming ingest (``tests.utils.uploads``)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI

from api.main import create_app
from tests.utils.uploads import digest_ingest


def app() -> FastAPI:
    """Ingests record the digest of what they read."""
    return create_app(ingest=digest_ingest)


def hanging_app() -> FastAPI:
    """Ingests never end: the process is killed in the middle of one."""
    def hang(source: Any, **kwargs: Any) -> Any:
        threading.Event().wait()

    return create_app(ingest=hang)
