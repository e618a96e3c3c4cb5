"""Data-parallel execution: the leader's exchange with its ranks, and a rank's loop.

Rank 0 (the leader) owns the parameters and the optimizer. At each step (with local SGD, each
round) it sends the parameters and each rank's block of shards to every other rank; each rank
computes its shards' gradients (or round) and sends back their partial sums over the fixed
reduction tree (``core.reduce``); the leader completes the tree with its own shards and
steps. A rank whose link breaks, or that stays silent for ``rank_timeout_s``, is dropped, and
the shards are planned again over the ranks left; since the reduction order depends on the
shard count alone, that changes the time a job takes, never its result.

Two ranks under exact averaging (a pair) skip the parameters' trip: the leader sends the other
rank, once, the parameters and the optimizer's state (REPLICA); from then on each side sends
the other its partial sums at once (GRADS one way, SUMS the other, crossing on the link), and
both complete the same tree and take the same optimizer step, so the replica stays equal to
the leader's parameters bit for bit. A step then waits for one transfer instead of two in a
row, with the optimizer step on both sides at once. The leader's state stays the one that is
checkpointed; a re-plan sends the replica again.

Joining goes through Redis mailboxes (``worker.transport.join_plane``); the steps go over
one link per rank (``worker.transport.links``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.job import JobData, ShardSet
from core.local_sgd import LocalRounds, round_end, round_weights
from core.optimizers import (
    Optimizer,
    load_shard_states,
    load_state_arrays,
    make_optimizer,
    shard_states,
    state_arrays,
)
from core.reduce import (
    Merged,
    Node,
    Summed,
    covering_nodes,
    spare_buffers,
    sum_nodes,
    tree_sum,
)
from core.training import RankLost
from worker.shutdown import SHUTTING_DOWN
from worker.telemetry import ROUND_SECONDS
from worker.transport.handshake import (
    HandshakeError,
    Listener,
    Ticket,
    connect,
    decode_handshake,
    encode_handshake,
)
from worker.transport.join_plane import JoinPlane, Mailboxes
from worker.transport.links import Link, LinkClosed
from worker.transport.messages import (
    ASSIGN,
    GRADS,
    JOIN,
    PARAMS,
    REPLICA,
    SUMS,
    Message,
    decode,
    encode,
)

log = logging.getLogger(__name__)

JOIN_QUIET_S = 0.2


def plan_ranks(shards: int, ranks: int) -> list[list[int]]:
    """Contiguous blocks of near-equal size, rank 0 first (so the leader's come first)."""
    return [block.tolist() for block in np.array_split(np.arange(shards), ranks)]


@dataclass
class Team:
    """The ranks that joined, their shards and their links."""

    members: dict[int, list[int]]
    links: dict[int, Link]


def slot_bytes_for(param_bytes: int) -> int:
    """Shared slots that hold a step's message: the parameters, or one or two partial sums,
    and the header. Larger ones (a replica with Adam's moments, local SGD's optimizer states)
    travel over TCP."""
    return 2 * param_bytes + (1 << 16)


def gather_ranks(plane: JoinPlane, boxes: Mailboxes, wanted: int, shards: int, window: float,
                 listen_on: str, timeout: float, *, shared_dir: Path | None = None,
                 slot_bytes: int = 0) -> Team:
    """Wait up to ``window`` s for ranks 1..wanted to join and give each joiner its block of
    shards. Blocks of ranks that did not join stay with the leader, so a busy cluster never
    makes a job wait for capacity it does not have. ``listen_on`` is the address to accept
    the ranks' TCP links on. Ranks on this host also share memory in ``shared_dir`` with the
    leader (``worker.transport.slots``).

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
    if not members:
        return Team({}, {})
    listener = Listener(listen_on, shared_dir, slot_bytes)
    text = encode_handshake(listener.ticket).decode()
    for rank, owned in members.items():
        plane.send(boxes.rank(rank),
                   b"".join(encode(ASSIGN, rank=rank, shards=owned, text=text)))
    try:
        links: dict[int, Link] = dict(listener.accept(set(members), timeout))
    finally:
        listener.close()
    return Team({rank: members[rank] for rank in links}, links)


class RemoteRanks:
    """The leader's side of the exchange (``core.training.RemoteShards``). ``local_sgd``: the
    job's rounds are local SGD rounds (``sync_every`` > 1), not exact steps."""

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
        return self._local_nodes

    @property
    def _paired(self) -> bool:
        """Exact averaging with one other rank: it steps a replica (see the module doc)."""
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
        """A pair's replica gets the leader's partial sums, crossing its own on the link (the
        reply is taken here: ``await_node`` finds it received)."""
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


def join(plane: JoinPlane, boxes: Mailboxes, rank: int) -> None:
    plane.send(boxes.leader, b"".join(encode(JOIN, rank=rank)))


def await_assignment(plane: JoinPlane, boxes: Mailboxes, rank: int,
                     timeout: float) -> tuple[list[int], Link] | None:
    """This rank's shards and its link to the leader, or None when the leader runs without
    it (it joined too late, or the leader is gone)."""
    payload = plane.receive(boxes.rank(rank), timeout)
    if payload is None or (assigned := decode(payload)).kind != ASSIGN:
        return None
    owned = assigned.shards.tolist()
    try:
        ticket = decode_handshake(Ticket, assigned.text)
    except HandshakeError:
        log.warning("rank %d of job %s was assigned no ticket it can read", rank, boxes.job_id)
        return None
    try:
        return owned, connect(ticket, rank, timeout)
    except OSError:
        log.warning("rank %d of job %s could not reach its leader at %s", rank, boxes.job_id,
                    ticket.address)
        return None


class Replica:
    """What a pair's rank keeps to step its replica of the parameters: the optimizer, and
    buffers for the step's gradient and scratch (made once, at its first REPLICA)."""

    def __init__(self, job: JobData) -> None:
        net = job.net
        self.optimizer = make_optimizer(job.spec.optimizer, net.n_params, net.dtype)
        self.grad, self.scratch = net.empty(), net.empty()


class RankShards:
    """A rank's part of each round: its shards' partial sums over the fixed tree, with
    exact averaging their gradients at one step, with local SGD their weighted replicas after
    a round (``core.local_sgd``), started from the optimizer states the leader sends. In a
    pair (``REPLICA``), it also steps its replica of the parameters with the leader's sums."""

    def __init__(self, job: JobData, owned: list[int]) -> None:
        net = job.net
        self.job, self.owned = job, owned
        self.shard_set = ShardSet(job, owned)
        self.nodes = covering_nodes(0, job.spec.shards, set(owned))
        self.sums = [net.empty() for _ in self.nodes]
        self._spare = spare_buffers(job.spec.shards, self.sums[0])
        self.params = net.empty()
        self.local = job.spec.sync_every > 1
        self._rounds = LocalRounds(self.shard_set) if self.local else None
        self.optimizers = {shard: make_optimizer(job.spec.optimizer, net.n_params, net.dtype)
                           for shard in owned} if self.local else {}
        self.replica: Replica | None = None  # set by a REPLICA

    def load(self, message: Message) -> None:
        """Start from the parameters (and optimizer states) of a PARAMS or REPLICA."""
        job = self.job
        self.params[...] = message.vectors(job.net.dtype, 1)[0]
        if message.kind == REPLICA:
            if self.replica is None:
                self.replica = Replica(job)
            load_state_arrays(self.replica.optimizer, message.buffers[1:])
        elif self.local:
            load_shard_states(self.optimizers, self.owned, message.buffers[1:])

    def compute(self, start: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """The partial sums of the round that starts after ``start`` steps, from the loaded
        parameters; the losses (owned shards x steps of the round) and the buffers that follow
        the sums in the reply (the optimizer states with local SGD)."""
        job = self.job
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

            def leaf(shard: int, out: np.ndarray) -> None:
                rounds.run(shard, start, end, self.params, self.optimizers[shard],
                           weights[shard], out, losses[row[shard]])

        sum_nodes(self.nodes, leaf, self.sums, self._spare)
        return losses, shard_states(self.optimizers, self.owned) if self.local else []

    def step_replica(self, message: Message) -> None:
        """Complete the step's tree with the leader's sums (a SUMS) and step the replica, as
        the leader steps its parameters."""
        replica, job = self.replica, self.job
        assert replica is not None

        def no_leaf(shard: int, out: np.ndarray) -> None:
            raise AssertionError(f"shard {shard} is in no node the pair summed")

        tree_sum(0, job.spec.shards, no_leaf, replica.grad, self._spare,
                 known=Merged(Summed(zip(self.nodes, self.sums, strict=True)),
                              message.node_sums(job.net.dtype)))
        job.descend(replica.optimizer, self.params, replica.grad, replica.scratch)


def serve_rank(link: Link, rank: int, job: JobData, owned: list[int], timeout: float) -> int:
    """Compute this rank's partial sums for every round the leader starts (over the block of
    shards that comes with it: ``owned`` at first, another after a re-plan), until the link
    closes or the leader falls silent; returns the number of rounds served.

    A round starts with a PARAMS or a REPLICA; in a pair, each SUMS of the round just served
    also starts the next, from the replica stepped with it."""
    shards = RankShards(job, owned)
    served = 0
    round_, step = 0, 0
    try:
        message = decode(link.receive(timeout))
        # Checked at each round: a worker that is stopping leaves now (closing the link), so
        # that it need not wait for the job's end; the leader plans these shards over the
        # ranks left.
        while not SHUTTING_DOWN.is_set():
            if message.kind in (PARAMS, REPLICA):
                if (assigned := message.shards.tolist()) != shards.owned:
                    shards = RankShards(job, assigned)  # re-planned after a rank was lost
                shards.load(message)
                round_, step = message.round, message.step
            elif (message.kind == SUMS and message.round == round_
                  and shards.replica is not None):
                shards.step_replica(message)
                round_, step = round_ + 1, step + 1
            else:
                message = decode(link.receive(timeout))  # stale: from before a re-plan
                continue
            if step == job.total_steps:  # the replica's last step: the leader ends the job
                message = decode(link.receive(timeout))
                continue
            losses, states = shards.compute(step)
            reply = encode(GRADS, round=round_, step=step, rank=rank, shards=shards.owned,
                           losses=losses, nodes=shards.nodes, buffers=[*shards.sums, *states])
            served += 1
            # In a pair the leader's sums cross this reply on the link: neither side waits
            # for the other to read.
            message = decode(link.exchange(reply, timeout))
        return served
    except LinkClosed:
        return served
    finally:
        link.close()
