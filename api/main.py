"""The FastAPI app: ``create_app`` builds it and mounts the routers; nothing else lives here.

``uvicorn api.main:app`` serves the app of the environment's settings (``SHARDTRAIN_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from importlib.metadata import version

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from api.body_limit import BodyLimitMiddleware
from api.deps import QuotaCheck, background_sessions, database_gate
from api.errors import install_error_handlers
from api.model_cache import ModelCache
from api.monitoring import RequestLatencyMiddleware, ServiceCollector, request_histogram
from api.queue import queue_depth
from api.routes import datasets, events, health, jobs, monitoring, pages, results, uploads
from api.services.ingest import ingest as stream_ingest
from api.services.quota import check_quota as tenant_quota
from api.services.upload_ingest import Ingest, IngestExecutor
from api.services.upload_sweep import sweep_forever
from api.text_params import refuse_nul_characters
from db.settings import Settings, get_settings

# A scrape waits at most this long for the broker's queue depth.
QUEUE_DEPTH_TIMEOUT_S = 1.0


@contextlib.asynccontextmanager
async def _background(app: FastAPI) -> AsyncIterator[None]:
    """The upload sweep, for as long as the app serves; then the ingests stop."""
    ingests: IngestExecutor | None = app.state.ingests
    if ingests is None:
        yield
        return
    sweeping = asyncio.create_task(sweep_forever(
        sessions=ingests.sessions, settings=ingests.settings, executor=ingests))
    try:
        yield
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
        ingests.shutdown()


def create_app(settings: Settings | None = None, *, ingest: Ingest | None = stream_ingest,
               check_quota: QuotaCheck | None = tenant_quota) -> FastAPI:
    """The API for ``settings`` (default: the environment's): its limits, database, broker.

    ``ingest`` reads a complete resumable upload into a dataset (``api.services.ingest``;
    tests may give a stand-in); None: ``/v1/uploads`` is not served. ``check_quota``
    refuses an upload that would take its tenant past its quota; None: no quota.
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="shardtrain",
        version=version("shardtrain"),
        summary="Data-parallel training of multi-layer perceptrons, as jobs over HTTP.",
        dependencies=[Depends(refuse_nul_characters)],
        lifespan=_background,
    )
    app.state.settings = settings
    app.state.ingests = None if ingest is None else IngestExecutor(
        ingest=ingest, sessions=background_sessions(settings), settings=settings)
    app.state.quota_check = check_quota
    app.state.models = ModelCache()
    app.state.db_gate = gate = database_gate(settings)
    app.state.metrics = registry = CollectorRegistry()
    registry.register(ServiceCollector(
        gate, partial(queue_depth, QUEUE_DEPTH_TIMEOUT_S, settings=settings)))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       exempt=uploads.body_limit_exempt)
    app.add_middleware(RequestLatencyMiddleware, histogram=request_histogram(registry))
    install_error_handlers(app)
    for module in (health, monitoring, datasets, jobs, events, results, pages):
        app.include_router(module.router)
    if ingest is not None:
        app.include_router(uploads.router)
    app.mount("/static", pages.assets(), name="static")
    return app


app = create_app()
