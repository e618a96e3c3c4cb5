"""The shards other ranks compute: the protocol a leader's exchange with its ranks offers.

The core defines it and calls it from its tree sum; the service implements it over its links
(``worker.exchange``), and tests implement it in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from core.optimizers import Optimizer
from core.reduce import Node, Nodes


class RemoteShards(Nodes, Protocol):
    """The shards that other ranks compute, as the leader's exchange with them offers them
    (SPEC section 5; the service's exchange is ``worker.exchange``). ``await_node`` gives a
    rank's partial sum, waiting for it. A rank that stops answering raises ``RankLost``: its
    shards are planned again over the ranks left, this process included, and the round is
    computed again."""

    def begin(self, step: int, params: np.ndarray, optimizers: Sequence[Optimizer]) -> None:
        """Start a round after ``step`` steps, from ``params`` (n_params,) and ``optimizers``
        (exact averaging's one, or local SGD's one per shard, loaded at the round's end)."""
        ...

    @property
    def local_nodes(self) -> list[Node]:
        """The tree nodes of the shards this process computes, as planned now."""
        ...

    def share(self, sums: Mapping[Node, np.ndarray]) -> None:
        """Give the ranks this process's partial sums, by node. Raises RankLost."""
        ...

    def losses(self) -> dict[int, list[float]]:
        """Each remote shard's summed loss at each step of the round."""
        ...


class RankLost(Exception):
    """Rank ``rank`` stopped answering; its shards are now computed by the ranks left."""

    def __init__(self, rank: int) -> None:
        super().__init__(f"rank {rank} stopped answering")
        self.rank = rank
