"""What ``GET /metrics`` exposes to Prometheus, besides the worker's own histograms.

Each app has a registry of its own (so that several apps in one process, as in the tests, do
not clash) with:

- ``ServiceCollector``, read at scrape time: jobs by status and the running jobs' rates from
  the database (every deployment writes them there), the broker's queue depth, and this
  process's database slots (``api.admission``);
- ``shardtrain_http_request_seconds``, timed by ``RequestLatencyMiddleware``.

The process's default registry is served beside it: the process and platform collectors of
prometheus-client, and the step and round histograms of ``worker.telemetry`` when a worker
runs in this process (the embedded default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.admission import DatabaseGate
from db.models import JobStatus
from db.queries.stats import jobs_by_status, running_rates

log = logging.getLogger(__name__)

QueueDepth = Callable[[], int | None]


class ServiceCollector(Collector):
    """Gauges computed from the database and the broker each time Prometheus scrapes."""

    def __init__(self, gate: DatabaseGate, queue_depth: QueueDepth) -> None:
        self._gate = gate
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        """Called by the ``/metrics`` route inside a slot of the gate."""
        yield from self._from_database()
        yield GaugeMetricFamily("shardtrain_db_slots", "Requests that may hold a database "
                                "session at once in this API process.", value=self._gate.slots)
        yield GaugeMetricFamily("shardtrain_db_slots_in_use", "Database slots held now, the "
                                "scrape's own included.", value=self._gate.in_use)
        yield CounterMetricFamily("shardtrain_db_overloaded", "Requests answered 503 after "
                                  "waiting db_queue_s for a database slot.",
                                  value=self._gate.rejected)
        depth = self._queue_depth()
        if depth is not None:  # an unreachable broker shows as a missing series, not as 0
            yield GaugeMetricFamily(
                "shardtrain_queue_depth",
                "Task messages waiting on the broker for a worker (jobs and their ranks).",
                value=depth)

    def _from_database(self) -> Iterator[Metric]:
        try:
            with self._gate.factory() as session:
                counts = jobs_by_status(session)
                samples_per_s, steps_per_s = running_rates(session)
        except SQLAlchemyError:
            # Metrics matter most during an outage: the rest is still served (and /readyz
            # tells that the database is unreachable).
            log.warning("/metrics: the database did not answer", exc_info=True)
            return
        jobs = GaugeMetricFamily("shardtrain_jobs", "Jobs in each status, all tenants.",
                                 labels=["status"])
        for status in get_args(JobStatus):  # every status, 0 included, so series never vanish
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "shardtrain_steps_per_second",
            "Training steps per second summed over the running jobs, from the samples per "
            "second their leaders last wrote over each job's batch size.", value=steps_per_s)
        yield GaugeMetricFamily(
            "shardtrain_samples_per_second",
            "Training rows per second summed over the running jobs.", value=samples_per_s)


# Requests answer in milliseconds; uploads and predictions on large bodies take seconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)


def request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "shardtrain_http_request_seconds",
        "Time from receiving an API request to starting its response (so a stream of events "
        "counts until its headers), by route template.",
        ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=registry)


class RequestLatencyMiddleware:
    """Times each HTTP request into ``histogram``, labelled by the route's path template
    (``/v1/jobs/{job_id}``), never the raw path, which would make a series per id."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            observed = True
            # The router records the matched route in the scope; unmatched paths share a label.
            route = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - start)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not observed:
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            if not observed:
                observe(500)
            raise
