"""Data-parallel execution: the leader's exchange with its ranks, and a rank's loop.

Rank 0 (the leader) owns the parameters and the optimizer. At each step (with local SGD, each
round) it sends the parameters and each rank's block of shards to every other rank; each rank
computes its shards' gradients (or round) and sends back their partial sums over the fixed
reduction tree (``core.reduce``); the leader completes the tree with its own shards and
steps. A rank whose link breaks, or that stays silent for ``rank_timeout_s``, is dropped, and
the shards are planned again over the ranks left; since the reduction order depends on the
shard count alone, that changes the time a job takes, never its result.

Joining goes through the data plane's mailboxes (``worker.dataplane``); the steps go over one
link per rank (``worker.links``): a TCP connection when the ranks are processes, in-memory
mailboxes when they are threads of one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.job import JobData, ShardSet
from core.local_sgd import LocalRounds, round_end, round_weights
from core.optimizers import Optimizer, load_state_arrays, make_optimizer, state_arrays
from core.reduce import Node, covering_nodes, spare_buffers, tree_sum
from core.training import RankLost
from worker.dataplane import DataPlane
from worker.links import Link, LinkClosed, Listener, MailboxLink, connect
from worker.messages import ASSIGN, GRADS, JOIN, PARAMS, Message, decode, encode
from worker.shutdown import SHUTTING_DOWN

log = logging.getLogger(__name__)

JOIN_QUIET_S = 0.2


OptimizersByShard = Sequence[Optimizer] | dict[int, Optimizer]


def shard_states(optimizers: OptimizersByShard, shards: list[int]) -> list[np.ndarray]:
    """The optimizer states of ``shards``, one shard after the other, as raw arrays."""
    return [array for shard in shards for array in state_arrays(optimizers[shard])]


def load_shard_states(optimizers: OptimizersByShard, shards: list[int],
                      buffers: list[memoryview]) -> None:
    """Load into the optimizers of ``shards`` the buffers ``shard_states`` sent."""
    per_shard = len(buffers) // len(shards)
    for i, shard in enumerate(shards):
        load_state_arrays(optimizers[shard], buffers[i * per_shard:(i + 1) * per_shard])


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

    def from_rank(self, rank: int) -> str:
        return f"shardtrain:{self.job_id}:{self.attempt}:from{rank}"

    @property
    def joining_closed(self) -> str:
        return f"shardtrain:{self.job_id}:{self.attempt}:joining-closed"


def plan_ranks(shards: int, ranks: int) -> list[list[int]]:
    """Contiguous blocks of near-equal size, rank 0 first (so the leader's come first)."""
    return [block.tolist() for block in np.array_split(np.arange(shards), ranks)]


@dataclass
class Team:
    """The ranks that joined, their shards and their links."""

    members: dict[int, list[int]]
    links: dict[int, Link]


def gather_ranks(plane: DataPlane, boxes: Mailboxes, wanted: int, shards: int, window: float,
                 listen_on: str | None, timeout: float) -> Team:
    """Wait up to ``window`` s for ranks 1..wanted to join and give each joiner its block of
    shards. Blocks of ranks that did not join stay with the leader, so a busy cluster never
    makes a job wait for capacity it does not have. ``listen_on`` is the address to accept
    the ranks' TCP links on; None links them through the data plane (one process).

    Idle workers start their rank tasks within milliseconds of each other, so once a rank has
    joined, ``JOIN_QUIET_S`` without another means the rest are not coming soon."""
    deadline = last_join = time.monotonic() + window
    joined: set[int] = set()
    while len(joined) < wanted:
        left = deadline - time.monotonic()
        if joined:
            left = min(left, last_join + JOIN_QUIET_S - time.monotonic())
        if left <= 0:
            break
        payload = plane.receive(boxes.leader, left)
        if payload is not None and (message := decode(payload)).kind == JOIN:
            joined.add(message.rank)
            last_join = time.monotonic()
    # Rank tasks that start from now on learn at once that they are not needed.
    plane.mark(boxes.joining_closed)
    blocks = plan_ranks(shards, 1 + len(joined))
    members = {rank: blocks[i] for i, rank in enumerate(sorted(joined), start=1)}
    listener = Listener(listen_on) if listen_on is not None and members else None
    text = f"{listener.address} {listener.secret}" if listener else ""
    for rank, owned in members.items():
        plane.send(boxes.rank(rank),
                   b"".join(encode(ASSIGN, rank=rank, shards=owned, text=text)))
    links: dict[int, Link]
    if listener is None:
        links = {rank: MailboxLink(plane, boxes.rank(rank), boxes.from_rank(rank))
                 for rank in members}
    else:
        links = dict(listener.accept(set(members), timeout))
        listener.close()
    return Team({rank: members[rank] for rank in links}, links)


class RemoteRanks:
    """The leader's side of the exchange (``core.training.RemoteShards``)."""

    def __init__(self, team: Team, shards: int, params: np.ndarray, timeout: float,
                 job_id: str = "") -> None:
        self._members, self._links = dict(team.members), dict(team.links)
        self._shards, self._timeout, self._job_id = shards, timeout, job_id
        self._dtype = params.dtype
        self._round = 0
        self._received: dict[Node, np.ndarray] = {}
        self._losses: dict[int, list[float]] = {}
        self._optimizers: Sequence[Optimizer] = ()
        self._owner: dict[Node, int] = {}
        self._replan()

    @property
    def ranks(self) -> int:
        """Ranks taking part, the leader included."""
        return 1 + len(self._members)

    @property
    def members(self) -> dict[int, list[int]]:
        """The shards of each rank taking part, the leader's (rank 0) not included."""
        return {rank: list(owned) for rank, owned in self._members.items()}

    def _replan(self) -> None:
        self._owner = {node: rank for rank, owned in self._members.items()
                       for node in covering_nodes(0, self._shards, owned)}

    def begin(self, step: int, params: np.ndarray, optimizers: Sequence[Optimizer] = ()
              ) -> None:
        self._optimizers = optimizers
        while True:
            self._round += 1
            self._received.clear()
            self._losses.clear()
            lost = []
            for rank, link in self._links.items():
                states = shard_states(optimizers, self._members[rank]) if optimizers else []
                try:
                    link.send(encode(PARAMS, round=self._round, step=step,
                                     shards=self._members[rank], buffers=[params, *states]))
                except LinkClosed:
                    lost.append(rank)
            if not lost:
                return
            # Re-planned without them: the round starts again, so that every rank computes
            # its new block (and its reply to this one is recognised as stale).
            for rank in lost:
                self._drop(rank)

    def __contains__(self, node: object) -> bool:
        return node in self._owner

    def __getitem__(self, node: Node) -> np.ndarray:
        rank = self._owner[node]
        while node not in self._received:
            try:
                payload = self._links[rank].receive(self._timeout)
            except LinkClosed:
                self._drop(rank)
                raise RankLost(node) from None
            message = decode(payload)
            if message.kind == GRADS and message.round == self._round:
                self._take(message)
        return self._received[node]

    def _take(self, message: Message) -> None:
        # The sums are views of the link's buffer: the tree sum copies them before the link's
        # next receive, which is the next round's. The optimizer states are copied here.
        sums = message.vectors(self._dtype, len(message.nodes))
        for bounds, vector in zip(message.nodes, sums, strict=True):
            self._received[(int(bounds[0]), int(bounds[1]))] = vector
        shards = message.shards.tolist()
        self._losses.update(zip(shards, message.losses.reshape(len(shards), -1).tolist(),
                                strict=True))
        if self._optimizers:
            load_shard_states(self._optimizers, shards, message.buffers[len(sums):])

    def losses(self) -> dict[int, list[float]]:
        return self._losses

    def _drop(self, rank: int) -> None:
        """Leave ``rank`` out and plan the shards over the ranks left, in contiguous blocks as
        at the start, the leader's first; each rank learns its new block with the next
        round's parameters."""
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
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._members.clear()


def join(plane: DataPlane, boxes: Mailboxes, rank: int) -> None:
    plane.send(boxes.leader, b"".join(encode(JOIN, rank=rank)))


def await_assignment(plane: DataPlane, boxes: Mailboxes, rank: int,
                     timeout: float) -> tuple[list[int], Link] | None:
    """This rank's shards and its link to the leader, or None when the leader runs without
    it (it joined too late, or the leader is gone)."""
    payload = plane.receive(boxes.rank(rank), timeout)
    if payload is None or (assigned := decode(payload)).kind != ASSIGN:
        return None
    owned = assigned.shards.tolist()
    if not assigned.text:
        return owned, MailboxLink(plane, boxes.from_rank(rank), boxes.rank(rank))
    address, secret = assigned.text.split(" ", 1)
    try:
        return owned, connect(address, rank, secret, timeout)
    except OSError:
        log.warning("rank %d of job %s could not reach its leader at %s", rank, boxes.job_id,
                    address)
        return None


class RankShards:
    """A rank's part of each round: its shards' partial sums over the fixed tree, with
    exact averaging their gradients at one step, with local SGD their weighted replicas after
    a round (``core.local_sgd``), started from the optimizer states the leader sends."""

    def __init__(self, job: JobData, owned: list[int]) -> None:
        net = job.net
        self.job, self.owned = job, owned
        self.shard_set = ShardSet(job, owned)
        self.nodes = covering_nodes(0, job.spec.shards, set(owned))
        self.sums = [net.empty() for _ in self.nodes]
        self._spare = spare_buffers(max(hi - lo for lo, hi in self.nodes), self.sums[0])
        self.params = net.empty()
        self.local = job.spec.sync_every > 1
        self._rounds = LocalRounds(self.shard_set) if self.local else None
        self.optimizers = {shard: make_optimizer(job.spec.optimizer, net.n_params, net.dtype)
                           for shard in owned} if self.local else {}

    def compute(self, message: Message) -> tuple[np.ndarray, list[np.ndarray]]:
        """The losses (owned shards x steps of the round) and the buffers that follow the
        sums in the reply (the optimizer states with local SGD)."""
        job, start = self.job, message.step
        self.params[...] = message.vectors(job.net.dtype, 1)[0]
        row = {shard: i for i, shard in enumerate(self.owned)}
        if self._rounds is None:
            losses = np.zeros((len(self.owned), 1))
            scale = job.gradient_scale / job.step_rows(start)

            def leaf(shard: int, out: np.ndarray) -> None:
                losses[row[shard], 0] = self.shard_set.gradient(shard, start, self.params, out,
                                                                scale)[0]
        else:
            rounds, end = self._rounds, round_end(job, start)
            weights = round_weights(job, start, end)
            losses = np.zeros((len(self.owned), end - start))
            load_shard_states(self.optimizers, self.owned, message.buffers[1:])

            def leaf(shard: int, out: np.ndarray) -> None:
                rounds.run(shard, start, end, self.params, self.optimizers[shard],
                           weights[shard], out, losses[row[shard]])

        for (lo, hi), out in zip(self.nodes, self.sums, strict=True):
            tree_sum(lo, hi, leaf, out, self._spare)
        return losses, shard_states(self.optimizers, self.owned) if self.local else []


def serve_rank(link: Link, rank: int, job: JobData, owned: list[int], timeout: float) -> int:
    """Compute this rank's partial sums for every round the leader starts (over the block of
    shards that comes with it: ``owned`` at first, another after a re-plan), until the link
    closes or the leader falls silent; returns the number of rounds served."""
    shards = RankShards(job, owned)
    served = 0
    try:
        while True:
            if SHUTTING_DOWN.is_set():
                # This worker is stopping: leave now (closing the link), so that it need not
                # wait for the job's end; the leader plans these shards over the ranks left.
                return served
            message = decode(link.receive(timeout))
            if message.kind != PARAMS:
                continue
            if (assigned := message.shards.tolist()) != shards.owned:
                shards = RankShards(job, assigned)  # re-planned after a rank was lost
            losses, states = shards.compute(message)
            link.send(encode(GRADS, round=message.round, step=message.step, rank=rank,
                             shards=shards.owned, losses=losses, nodes=shards.nodes,
                             buffers=[*shards.sums, *states]))
            served += 1
    except LinkClosed:
        return served
    finally:
        link.close()
