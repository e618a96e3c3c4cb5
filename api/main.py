"""The FastAPI app: ``create_app`` builds it and mounts the routers; nothing else lives here.

``uvicorn api.main:app`` serves the app of the environment's settings (``SHARDTRAIN_*``).
"""

from __future__ import annotations

from importlib.metadata import version

from fastapi import FastAPI

from api.body_limit import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.model_cache import ModelCache
from api.routes import datasets, health, jobs, results
from db.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (default: the environment's): its limits, database, broker."""
    settings = settings or get_settings()
    app = FastAPI(
        title="shardtrain",
        version=version("shardtrain"),
        summary="Data-parallel training of multi-layer perceptrons, as jobs over HTTP.",
    )
    app.state.settings = settings
    app.state.models = ModelCache()
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for module in (health, datasets, jobs, results):
        app.include_router(module.router)
    return app


app = create_app()
