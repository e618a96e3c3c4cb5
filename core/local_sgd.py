"""Local SGD (SPEC section 4.4): rounds of steps between two synchronisations.

In a round, each shard steps a replica of the parameters with its own optimizer on its own
rows; at the round's end the parameters become the replicas' mean, each weighted by the rows
its shard drew in the round. A round runs ``sync_every`` steps, cut short at an epoch end.

A shard's round depends on the parameters at its start, its optimizer's state and its rows
alone, so any rank can run it, and the weighted replicas are summed over the fixed tree of
``core.reduce`` exactly as exact gradients are: the grouping of shards never changes the
result, and only one exchange per round crosses between ranks.
"""

from __future__ import annotations

import numpy as np

from core.job import JobData, ShardSet
from core.optimizers import Optimizer


def round_end(job: JobData, start: int) -> int:
    """Steps completed at the end of the round that starts after ``start`` steps."""
    spe = job.steps_per_epoch
    return min((start // job.spec.sync_every + 1) * job.spec.sync_every, (start // spe + 1) * spe)


def is_round_start(job: JobData, step: int) -> bool:
    """True when ``step`` completed steps end a round (or none has run yet)."""
    return step % job.spec.sync_every == 0 or step % job.steps_per_epoch == 0


def round_weights(job: JobData, start: int, end: int) -> np.ndarray:
    """(shards,) float64: each shard's share of the rows drawn in steps ``start..end-1``."""
    rows = job.plan.shares[np.arange(start, end) % job.steps_per_epoch].sum(axis=0)
    return rows / rows.sum()


class LocalRounds:
    """Runs rounds of the shards of one ``ShardSet``, with buffers made once."""

    def __init__(self, shard_set: ShardSet) -> None:
        job = shard_set.job
        net = job.net
        self.shard_set, self._scale = shard_set, job.gradient_scale
        self._replica, self._grad, self._scratch = net.empty(), net.empty(), net.empty()

    def run(self, shard: int, start: int, end: int, params: np.ndarray, optimizer: Optimizer,
            weight: float, out: np.ndarray, losses: np.ndarray) -> None:
        """Step ``shard``'s replica of ``params`` through steps ``start..end-1`` with its
        ``optimizer``, put its summed loss at each step into ``losses`` (0 where the shard
        drew no rows), then write ``weight`` times the replica into ``out``."""
        job, replica, grad = self.shard_set.job, self._replica, self._grad
        replica[...] = params
        for i, step in enumerate(range(start, end)):
            own = int(job.plan.shares[step % job.steps_per_epoch, shard])
            if own == 0:
                losses[i] = 0.0
                continue
            losses[i] = self.shard_set.gradient(shard, step, replica, grad, self._scale / own)[0]
            job.descend(optimizer, replica, grad, self._scratch)
        np.multiply(replica, weight, out=out)
