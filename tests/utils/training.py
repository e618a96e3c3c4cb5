"""Trainers as the core's tests need them: shards spread over ranks in this process, and
local SGD at every step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from core.job import JobData, ShardSet
from core.local_sgd import LocalRounds, round_end, round_weights
from core.optimizers import Optimizer
from core.reduce import Leaf, Node, Summed, covering_nodes, spare_buffers, sum_nodes
from core.spec import TrainSpec
from core.training import Trainer


class InProcessRanks:
    """The leader's exchange (``core.training.RemoteShards``) with ranks that are objects of
    this process: each group of ``groups`` is one rank's shards, and the leader computes the
    others. Each rank sums its nodes when a round begins; its optimizers with local SGD are
    the leader's own, which a rank elsewhere would receive and send back."""

    def __init__(self, job: JobData, groups: Sequence[Sequence[int]]) -> None:
        shards = job.spec.shards
        self._job = job
        self._ranks = [(list(group), ShardSet(job, group), covering_nodes(0, shards, group))
                       for group in groups]
        theirs = {shard for group in groups for shard in group}
        self._local_nodes = covering_nodes(0, shards, set(range(shards)) - theirs)
        self._sums = Summed()
        self._losses: dict[int, list[float]] = {}

    @property
    def local_nodes(self) -> list[Node]:
        return self._local_nodes

    def begin(self, step: int, params: np.ndarray, optimizers: Sequence[Optimizer]) -> None:
        self._sums.clear()
        self._losses.clear()
        for shards, shard_set, nodes in self._ranks:
            if self._job.spec.sync_every > 1:
                self._round(shards, shard_set, nodes, step, params, optimizers)
            else:
                self._step(shards, shard_set, nodes, step, params)

    def _sum(self, nodes: list[Node], leaf: Leaf) -> None:
        net, shards = self._job.net, self._job.spec.shards
        outs = [net.empty() for _ in nodes]
        self._sums.update(sum_nodes(nodes, leaf, outs, spare_buffers(shards, outs[0])))

    def _step(self, shards: list[int], shard_set: ShardSet, nodes: list[Node], step: int,
              params: np.ndarray) -> None:
        scale = self._job.gradient_scale / self._job.step_rows(step)

        def leaf(shard: int, out: np.ndarray) -> None:
            loss = shard_set.gradient(shard, step, params, out, scale)[0]
            self._losses[shard] = [loss]

        self._sum(nodes, leaf)

    def _round(self, shards: list[int], shard_set: ShardSet, nodes: list[Node], start: int,
               params: np.ndarray, optimizers: Sequence[Optimizer]) -> None:
        job, rounds = self._job, LocalRounds(shard_set)
        end = round_end(job, start)
        weights = round_weights(job, start, end)
        losses = {shard: np.zeros(end - start) for shard in shards}

        def leaf(shard: int, out: np.ndarray) -> None:
            rounds.run(shard, start, end, params, optimizers[shard], weights[shard], out,
                       losses[shard])

        self._sum(nodes, leaf)
        self._losses.update({shard: values.tolist() for shard, values in losses.items()})

    def share(self, sums: Mapping[Node, np.ndarray]) -> None:
        pass  # no rank here steps a replica of its own

    def __contains__(self, node: object) -> bool:
        return node in self._sums

    def await_node(self, node: Node) -> np.ndarray:
        return self._sums[node]

    def losses(self) -> dict[int, list[float]]:
        return self._losses


def over_ranks(spec: TrainSpec, X: np.ndarray, y: np.ndarray,
               groups: Sequence[Sequence[int]]) -> Trainer:
    """A trainer whose shards are spread as ``groups`` spreads them: the first group is the
    leader's, every other one a rank's (``InProcessRanks``)."""
    trainer = Trainer(spec, X, y)
    trainer.attach(InProcessRanks(trainer.job, groups[1:]))
    return trainer


def local_sgd_at_every_step(spec: TrainSpec, X: np.ndarray, y: np.ndarray) -> Trainer:
    """A trainer of ``spec`` (``sync_every`` 1) that runs local SGD's rounds of one step
    each, with an optimizer per shard, where the service averages gradients exactly: built
    for rounds of 2 steps, then given the job of ``spec``, whose rounds last one."""
    trainer = Trainer(replace(spec, sync_every=2), X, y)
    trainer.spec = spec
    trainer.job = replace(trainer.job, spec=spec)
    return trainer
