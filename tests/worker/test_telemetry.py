"""The worker's Prometheus histograms: a synchronisation round is timed around the exchange."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from prometheus_client import REGISTRY

from core.optimizers import Optimizer
from core.reduce import Node
from worker.telemetry import TimedRounds


class SlowRanks:
    """Ranks whose gradients arrive 20 ms after the parameters leave."""

    def __init__(self) -> None:
        self.sent_at = 0.0

    local_nodes = [(0, 1)]

    def begin(self, step: int, params: np.ndarray, optimizers: Sequence[Optimizer]) -> None:
        self.sent_at = time.perf_counter()

    def share(self, sums: Mapping[Node, np.ndarray]) -> None:
        pass

    def __contains__(self, node: object) -> bool:
        return node == (1, 2)

    def await_node(self, node: Node) -> np.ndarray:
        time.sleep(max(0.0, self.sent_at + 0.02 - time.perf_counter()))
        return np.ones(3)

    def losses(self) -> dict[int, list[float]]:
        return {1: [0.5]}


def _rounds() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("shardtrain_sync_round_seconds_count") or 0.0
    total = REGISTRY.get_sample_value("shardtrain_sync_round_seconds_sum") or 0.0
    return count, total


def test_a_round_is_timed_from_sending_the_parameters_to_the_ranks_losses() -> None:
    rounds = TimedRounds(SlowRanks())
    count, total = _rounds()
    for step in range(2):
        rounds.begin(step, np.zeros(3), [])
        assert (1, 2) in rounds and (0, 1) not in rounds
        assert rounds.await_node((1, 2)).sum() == 3
        assert rounds.losses() == {1: [0.5]}
    new_count, new_total = _rounds()
    assert new_count - count == 2
    assert 0.04 <= new_total - total < 1.0
