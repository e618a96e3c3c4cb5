"""Prometheus metrics of this worker process: step and synchronisation round latency.

Observed in memory (the process's default registry): a histogram observation costs about a
microsecond and no I/O, so the hot loop can afford one per step. The API's ``/metrics`` serves
this registry, so they are scraped wherever a worker shares the API's process (the embedded
default, ``shardtrain serve``); ``celery worker`` processes record them but serve no endpoint.
Either way the step rate can be read off ``shardtrain_step_seconds_count``.
"""

from __future__ import annotations

from prometheus_client import Histogram

# From a tiny network on one rank (tens of microseconds) to a wide one over slow links.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

STEP_SECONDS = Histogram(
    "shardtrain_step_seconds",
    "Wall time of one training step on a leader, its synchronisation round included.",
    buckets=LATENCY_BUCKETS)
ROUND_SECONDS = Histogram(
    "shardtrain_sync_round_seconds",
    "A synchronisation round as the leader sees it: from its start (the parameters sent to "
    "the ranks; a pair sends none) to holding all their gradients (the leader computes its "
    "own shards meanwhile).",
    buckets=LATENCY_BUCKETS)

