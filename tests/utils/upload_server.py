"""Apps for a real uvicorn process (``uvicorn --factory``), on the environment's settings:
the real one, and one whose ingests hang (the process is killed in the middle of one)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI

from api.main import create_app


def app() -> FastAPI:
    return create_app()


def hanging_app() -> FastAPI:
    """Ingests never end: the process is killed in the middle of one."""
    def hang(source: Any, **kwargs: Any) -> Any:
        threading.Event().wait()

    return create_app(ingest=hang)
