"""Data-parallel execution: the leader's exchange with its ranks, and a rank's loop.

Rank 0 (the leader) owns the parameters and the optimizer. At each step it sends the
parameters to every other rank; each rank computes the gradients of its shards and sends back
their partial sums over the fixed reduction tree (``core.reduce``); the leader completes the
tree with its own shards and steps. A rank that does not answer within ``rank_timeout_s`` is
dropped and its shards are computed by the leader from then on; since the reduction order
depends on the shard count alone, that changes the time a job takes, never its result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from core.job import JobData, ShardSet
from core.optimizers import gradient_scale
from core.reduce import Node, covering_nodes, spare_buffers, tree_sum
from core.training import RankLost
from worker.dataplane import DataPlane
from worker.messages import ASSIGN, GRADS, JOIN, PARAMS, STOP, decode, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mailboxes:
    """The data-plane names of one attempt of one job."""

    job_id: str
    attempt: int

    @property
    def leader(self) -> str:
        return f"shardtrain:{self.job_id}:{self.attempt}:leader"

    def rank(self, rank: int) -> str:
        return f"shardtrain:{self.job_id}:{self.attempt}:rank{rank}"


def plan_ranks(shards: int, ranks: int) -> list[list[int]]:
    """Contiguous blocks of near-equal size, rank 0 first (so the leader's come first)."""
    return [block.tolist() for block in np.array_split(np.arange(shards), ranks)]


class RemoteRanks:
    """The leader's side of the exchange (``core.training.RemoteShards``)."""

    def __init__(self, plane: DataPlane, boxes: Mailboxes, members: dict[int, list[int]],
                 shards: int, params: np.ndarray, timeout: float) -> None:
        self._plane, self._boxes, self._shards = plane, boxes, shards
        self._members = dict(members)
        self._dtype, self._size = params.dtype, params.size
        self._timeout = timeout
        self._round = 0
        self._received: dict[Node, np.ndarray] = {}
        self._losses: dict[int, float] = {}
        self._owner: dict[Node, int] = {}
        self._replan()

    @property
    def ranks(self) -> int:
        """Ranks taking part, the leader included."""
        return 1 + len(self._members)

    def _replan(self) -> None:
        self._owner = {node: rank for rank, owned in self._members.items()
                       for node in covering_nodes(0, self._shards, owned)}

    def begin(self, step: int, params: np.ndarray) -> None:
        self._round += 1
        self._received.clear()
        self._losses.clear()
        payload = encode(PARAMS, round=self._round, step=step, vectors=[params])
        for rank in self._members:
            self._plane.send(self._boxes.rank(rank), payload)

    def __contains__(self, node: object) -> bool:
        return node in self._owner

    def __getitem__(self, node: Node) -> np.ndarray:
        while node not in self._received:
            payload = self._plane.receive(self._boxes.leader, self._timeout)
            if payload is None:
                self._drop(self._owner[node])
                raise RankLost(node)
            message = decode(payload, dtype=self._dtype, size=self._size)
            if message.kind == JOIN:  # too late for this attempt's plan
                self._plane.send(self._boxes.rank(message.rank), encode(STOP))
            elif message.kind == GRADS and message.round == self._round:
                for bounds, vector in zip(message.nodes, message.vectors, strict=True):
                    self._received[(int(bounds[0]), int(bounds[1]))] = vector
                self._losses.update(zip(message.shards.tolist(), message.losses.tolist(),
                                        strict=True))
        return self._received[node]

    def losses(self) -> dict[int, float]:
        return self._losses

    def _drop(self, rank: int) -> None:
        log.warning("rank %d of job %s stopped answering; its shards %s move to the leader",
                    rank, self._boxes.job_id, self._members[rank])
        del self._members[rank]
        self._plane.send(self._boxes.rank(rank), encode(STOP))
        self._replan()

    def close(self) -> None:
        for rank in self._members:
            self._plane.send(self._boxes.rank(rank), encode(STOP))
        self._members.clear()
        self._plane.drop(self._boxes.leader)


def gather_ranks(plane: DataPlane, boxes: Mailboxes, wanted: int, shards: int,
                 window: float) -> dict[int, list[int]]:
    """Wait up to ``window`` s for ranks 1..wanted to join; give each joiner its block of
    shards. Ranks that did not join are simply not part of the plan: their blocks stay with
    the leader, so a busy cluster never makes a job wait for capacity it does not have."""
    import time

    deadline = time.monotonic() + window
    joined: set[int] = set()
    while len(joined) < wanted and (left := deadline - time.monotonic()) > 0:
        payload = plane.receive(boxes.leader, left)
        if payload is not None and (message := decode(payload)).kind == JOIN:
            joined.add(message.rank)
    blocks = plan_ranks(shards, 1 + len(joined))
    members = {rank: blocks[i] for i, rank in enumerate(sorted(joined), start=1)}
    for rank, owned in members.items():
        plane.send(boxes.rank(rank), encode(ASSIGN, rank=rank, shards=owned))
    return members


def serve_rank(plane: DataPlane, boxes: Mailboxes, rank: int, job: JobData, owned: list[int],
               timeout: float) -> int:
    """Compute this rank's partial sums for every step the leader sends, until told to stop
    or the leader falls silent; returns the number of steps served."""
    net = job.net
    shard_set = ShardSet(job, owned)
    nodes = covering_nodes(0, job.spec.shards, set(owned))
    sums = [net.empty() for _ in nodes]
    spare = spare_buffers(max(hi - lo for lo, hi in nodes), sums[0])
    params = net.empty()
    fold = gradient_scale(job.spec.optimizer)  # as the leader's Trainer folds it
    served = 0
    while True:
        payload = plane.receive(boxes.rank(rank), timeout)
        if payload is None:
            log.warning("rank %d of job %s: the leader fell silent", rank, boxes.job_id)
            return served
        message = decode(payload, dtype=net.dtype, size=net.n_params)
        if message.kind == STOP:
            return served
        if message.kind != PARAMS:
            continue
        params[...] = message.vectors[0]
        step, scale = message.step, fold / job.step_rows(message.step)
        losses: dict[int, float] = {}

        def leaf(shard: int, out: np.ndarray, step: int = step, scale: float = scale,
                 losses: dict[int, float] = losses) -> None:
            losses[shard] = shard_set.gradient(shard, step, params, out, scale)[0]

        for (lo, hi), out in zip(nodes, sums, strict=True):
            tree_sum(lo, hi, leaf, out, spare)
        plane.send(boxes.leader, encode(
            GRADS, round=message.round, step=step, rank=rank, shards=list(losses),
            losses=list(losses.values()), nodes=nodes, vectors=sums))
        served += 1
