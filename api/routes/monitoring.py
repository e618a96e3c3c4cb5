"""``GET /metrics``: Prometheus metrics of the service (no token: scrapers carry none)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import GateDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format; see api.monitoring"}})
async def metrics(request: Request, gate: GateDep) -> Response:
    """Jobs by status, step rates, queue depth, request latency, and step and synchronisation
    round latency histograms where a worker shares this process."""
    registry: CollectorRegistry = request.app.state.metrics
    # The collector reads the database: in a slot of the gate, like every request.
    async with gate.slot():
        # Two registries, one exposition: their metric names are disjoint.
        body = await run_in_threadpool(lambda: generate_latest(registry) +
                                       generate_latest(REGISTRY))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
