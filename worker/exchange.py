"""The leader's side of a step: its exchange with the other ranks (``RemoteRanks``).

The star. Each round (a step; with local SGD, a round of steps) the leader sends every rank a
PARAMS: the parameters, the rank's block of shards and, with local SGD, their optimizer
states. Each rank answers a GRADS: its shards' partial sums over the fixed tree
(``core.reduce``), their losses and, with local SGD, the optimizer states at the round's end.
The leader completes the tree with its own shards and steps.

The pair. With two ranks under exact averaging, the parameters do not travel at every step.
The leader sends the other rank one REPLICA: the parameters and the optimizer's state. From
then on both sides send their partial sums at once (SUMS one way, GRADS the other), complete
the same tree and take the same optimizer step, so the replica stays equal to the leader's
parameters, bit for bit. A step waits for one crossing instead of two in a row. The leader's
state stays the one that is checkpointed.

A lost rank. A rank whose link breaks, or that is silent for ``rank_timeout_s``, is dropped
(``RankLost``). Its shards are planned again over the ranks left, in contiguous blocks with
the leader's first, and the round is computed again (a pair's new replica included). The
reduction order depends on the shard count alone, so a loss costs time, never the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np

from core.optimizers import Optimizer, load_shard_states, shard_states, state_arrays
from core.reduce import Node, covering_nodes
from core.remote import RankLost
from worker.joining import Team, plan_ranks
from worker.telemetry import ROUND_SECONDS
from worker.transport.links import LinkClosed
from worker.transport.messages import GRADS, PARAMS, REPLICA, SUMS, Message, decode, encode

log = logging.getLogger(__name__)


class RemoteRanks:
    """The leader's exchange with ``team`` (``core.training.RemoteShards``), for a job of
    ``shards`` shards and parameters like ``params``. ``local_sgd``: rounds are local SGD
    rounds, not exact steps. A rank silent for ``timeout`` s is dropped."""

    def __init__(self, team: Team, shards: int, params: np.ndarray, timeout: float,
                 job_id: str = "", *, local_sgd: bool) -> None:
        self._members, self._links = dict(team.members), dict(team.links)
        self._shards, self._timeout, self._job_id = shards, timeout, job_id
        self._dtype = params.dtype
        self._local_sgd = local_sgd
        self._round = 0
        self._received: dict[Node, np.ndarray] = {}
        self._losses: dict[int, list[float]] = {}
        self._optimizers: Sequence[Optimizer] = ()
        self._owner: dict[Node, int] = {}
        self._local_nodes: list[Node] = []
        self._replica: int | None = None  # the pair's other rank, once its replica is set
        self._started = 0.0  # when this round began, for ROUND_SECONDS
        self._replan()

    @property
    def ranks(self) -> int:
        """Ranks taking part, the leader included."""
        return 1 + len(self._members)

    @property
    def members(self) -> dict[int, list[int]]:
        """The shards of each rank taking part, the leader's (rank 0) not included."""
        return {rank: list(owned) for rank, owned in self._members.items()}

    @property
    def local_nodes(self) -> list[Node]:
        """The tree nodes of the leader's own shards, as planned now."""
        return self._local_nodes

    @property
    def _paired(self) -> bool:
        return not self._local_sgd and len(self._members) == 1

    def _replan(self) -> None:
        self._owner = {node: rank for rank, owned in self._members.items()
                       for node in covering_nodes(0, self._shards, owned)}
        theirs = {shard for owned in self._members.values() for shard in owned}
        self._local_nodes = covering_nodes(
            0, self._shards, set(range(self._shards)) - theirs)
        self._replica = None  # a new plan: a pair's replica is set again

    def _opening(self, rank: int, step: int, params: np.ndarray,
                 optimizers: Sequence[Optimizer]) -> list[bytes | memoryview] | None:
        """What rank ``rank`` is sent to start this round; None for a replica in step."""
        owned = self._members[rank]
        if not self._paired:
            states = shard_states(optimizers, owned) if self._local_sgd else []
            return encode(PARAMS, round=self._round, step=step, shards=owned,
                          buffers=[params, *states])
        if self._replica == rank:
            return None
        self._replica = rank
        return encode(REPLICA, round=self._round, step=step, shards=owned,
                      buffers=[params, *state_arrays(optimizers[0])])

    def begin(self, step: int, params: np.ndarray, optimizers: Sequence[Optimizer]) -> None:
        """Start a round after ``step`` steps from ``params`` (n_params,) and ``optimizers``
        (the one of exact averaging, or one per shard), re-planning without any rank whose
        link is closed."""
        self._optimizers = optimizers
        self._started = time.perf_counter()
        while True:
            self._round += 1
            self._received.clear()
            self._losses.clear()
            lost = []
            for rank, link in self._links.items():
                opening = self._opening(rank, step, params, optimizers)
                try:
                    if opening is not None:
                        link.send(opening)
                except LinkClosed:
                    lost.append(rank)
            if not lost:
                return
            # Re-planned without them: the round starts again, so that every rank computes
            # its new block (and its reply to this one is recognised as stale).
            for rank in lost:
                self._drop(rank)

    def share(self, sums: Mapping[Node, np.ndarray]) -> None:
        """In a pair, send the leader's partial sums and take the rank's, which cross them on
        the link (elsewhere nothing). Raises RankLost."""
        if not self._paired:
            return
        (rank, link), = self._links.items()
        try:
            payload = link.exchange(encode(SUMS, round=self._round, nodes=list(sums),
                                           buffers=list(sums.values())), self._timeout)
        except LinkClosed:
            self._drop(rank)
            raise RankLost(rank) from None
        self._accept(decode(payload))

    def __contains__(self, node: object) -> bool:
        return node in self._owner

    def await_node(self, node: Node) -> np.ndarray:
        """The partial sum of ``node`` (n_params,), a view valid until the next round,
        receiving from its rank until it has come. Raises RankLost."""
        rank = self._owner[node]
        while node not in self._received:
            try:
                payload = self._links[rank].receive(self._timeout)
            except LinkClosed:
                self._drop(rank)
                raise RankLost(rank) from None
            self._accept(decode(payload))
        return self._received[node]

    def _accept(self, message: Message) -> None:
        if message.kind == GRADS and message.round == self._round:
            self._take(message)

    def _take(self, message: Message) -> None:
        # The sums are views of the link's buffer: the tree sum copies them before the link's
        # next receive, which is the next round's. The optimizer states are copied here.
        sums = message.node_sums(self._dtype)
        self._received.update(sums)
        shards = message.shards.tolist()
        self._losses.update(zip(shards, message.losses.reshape(len(shards), -1).tolist(),
                                strict=True))
        if self._local_sgd:
            load_shard_states(self._optimizers, shards, message.buffers[len(sums):])
        if len(self._received) == len(self._owner):  # the round's last rank has answered
            ROUND_SECONDS.observe(time.perf_counter() - self._started)

    def losses(self) -> dict[int, list[float]]:
        """Each remote shard's summed loss at each step of the round."""
        return self._losses

    def _drop(self, rank: int) -> None:
        """Leave ``rank`` out and plan the shards over the ranks left; each learns its new
        block with the next round's opening."""
        lost = self._members.pop(rank)
        self._links.pop(rank).close()
        blocks = plan_ranks(self._shards, 1 + len(self._members))
        for i, other in enumerate(sorted(self._members), start=1):
            self._members[other] = blocks[i]
        self._replan()
        log.warning("rank %d of job %s stopped answering; its shards %s are re-planned: "
                    "%s on the leader, the other ranks %s", rank, self._job_id, lost,
                    blocks[0], self.members)

    def close(self) -> None:
        """Close every rank's link: the ranks end their loops."""
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._members.clear()
