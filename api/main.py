"""The FastAPI app: ``create_app`` builds it and mounts the routers; nothing else lives here.

``uvicorn api.main:app`` serves the app of the environment's settings (``SHARDTRAIN_*``).
"""

from __future__ import annotations

from functools import partial
from importlib.metadata import version

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from api.body_limit import BodyLimitMiddleware
from api.deps import database_gate
from api.errors import install_error_handlers
from api.model_cache import ModelCache
from api.monitoring import RequestLatencyMiddleware, ServiceCollector, request_histogram
from api.queue import queue_depth
from api.routes import datasets, events, health, jobs, monitoring, pages, results
from api.text_params import refuse_nul_characters
from db.settings import Settings, get_settings

# A scrape waits at most this long for the broker's queue depth.
QUEUE_DEPTH_TIMEOUT_S = 1.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (default: the environment's): its limits, database, broker."""
    settings = settings or get_settings()
    app = FastAPI(
        title="shardtrain",
        version=version("shardtrain"),
        summary="Data-parallel training of multi-layer perceptrons, as jobs over HTTP.",
        dependencies=[Depends(refuse_nul_characters)],
    )
    app.state.settings = settings
    app.state.models = ModelCache()
    app.state.db_gate = gate = database_gate(settings)
    app.state.metrics = registry = CollectorRegistry()
    registry.register(ServiceCollector(
        gate, partial(queue_depth, QUEUE_DEPTH_TIMEOUT_S, settings=settings)))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestLatencyMiddleware, histogram=request_histogram(registry))
    install_error_handlers(app)
    for module in (health, monitoring, datasets, jobs, events, results, pages):
        app.include_router(module.router)
    app.mount("/static", pages.assets(), name="static")
    return app


app = create_app()
