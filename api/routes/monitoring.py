"""``GET /metrics``: Prometheus metrics of the service (no token: scrapers carry none)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format; see api.monitoring"}})
def metrics(request: Request) -> Response:
    """Jobs by status, step rates, queue depth, request latency, and step and synchronisation
    round latency histograms where a worker shares this process."""
    registry: CollectorRegistry = request.app.state.metrics
    # Two registries, one exposition: their metric names are disjoint.
    return Response(generate_latest(registry) + generate_latest(REGISTRY),
                    media_type=CONTENT_TYPE_LATEST)
