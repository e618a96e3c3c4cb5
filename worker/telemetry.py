"""Prometheus metrics of this worker process: step and synchronisation round latency.

Observed in memory (the process's default registry): a histogram observation costs about a
microsecond and no I/O, so the hot loop can afford one per step. The API's ``/metrics`` serves
this registry, so they are scraped wherever a worker shares the API's process (the embedded
default, ``shardtrain serve``); ``celery worker`` processes record them but serve no endpoint.
Either way the step rate can be read off ``shardtrain_step_seconds_count``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from prometheus_client import Histogram

from core.optimizers import Optimizer
from core.reduce import Node
from core.training import RemoteShards

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


class TimedRounds:
    """``RemoteShards`` that times each round into ``ROUND_SECONDS``, delegating the rest.

    A round starts at ``begin`` and ends when the trainer asks for the ranks' ``losses``,
    which it does once the tree sum holds every rank's gradients.
    """

    def __init__(self, inner: RemoteShards) -> None:
        self.inner = inner
        self._started = time.perf_counter()

    def begin(self, step: int, params: np.ndarray, optimizers: Sequence[Optimizer]) -> None:
        self._started = time.perf_counter()
        self.inner.begin(step, params, optimizers)

    @property
    def local_nodes(self) -> list[Node]:
        return self.inner.local_nodes

    def share(self, sums: Mapping[Node, np.ndarray]) -> None:
        self.inner.share(sums)

    def __contains__(self, node: object) -> bool:
        return node in self.inner

    def await_node(self, node: Node) -> np.ndarray:
        return self.inner.await_node(node)

    def losses(self) -> dict[int, list[float]]:
        ROUND_SECONDS.observe(time.perf_counter() - self._started)
        return self.inner.losses()
