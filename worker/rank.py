"""A rank other than the leader: its task body, its loop and its compute.

A rank joins its leader (``worker.joining``), loads the job's data, links to the leader, then
serves rounds until the link closes: each PARAMS or REPLICA starts a round, which it computes
and answers with a GRADS (``worker.exchange`` tells the protocol). In a pair, each SUMS steps
the rank's replica and starts the next round. A rank keeps nothing its leader needs: if it
dies, the ranks left take its shards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from core.data import InvalidDataError
from core.job import JobData, ShardSet
from core.local_sgd import LocalRounds, round_end, round_weights
from core.optimizers import load_shard_states, load_state_arrays, make_optimizer, shard_states
from core.reduce import Merged, Summed, covering_nodes, spare_buffers, sum_nodes, tree_sum
from core.spec import SpecError
from db.blobs import blob_store
from db.engine import SessionFactory, get_session_factory, session_scope
from db.models import Job
from db.settings import Settings, get_settings
from worker.joining import await_assignment, join
from worker.loading import JobSpec, load_input
from worker.outcome import Outcome
from worker.shutdown import SHUTTING_DOWN
from worker.transport.join_plane import JoinPlane, Mailboxes, join_plane
from worker.transport.links import Buffers, Link, LinkClosed
from worker.transport.messages import GRADS, PARAMS, REPLICA, SUMS, Message, decode, encode

log = logging.getLogger(__name__)

# How long after the leader's join window a joined rank still waits for its shards.
ASSIGN_GRACE_S = 1.0


def run_rank(job_id: str, attempt: int, rank: int, *, factory: SessionFactory | None = None,
             settings: Settings | None = None, plane: JoinPlane | None = None) -> str:
    """Serve as ``rank`` of attempt ``attempt`` of the job; returns what became of it.
    ``plane``: where to join (default: Redis at ``settings.redis_url``)."""
    factory = factory or get_session_factory()
    settings = settings or get_settings()
    if plane is None:
        if settings.redis_url is None:
            log.warning("rank %d of job %s cannot join: no Redis (redis_url) here", rank,
                        job_id)
            return Outcome.NOT_NEEDED
        plane = join_plane(settings.redis_url)
    boxes = Mailboxes(job_id, attempt)
    if plane.is_marked(boxes.joining_closed):
        return Outcome.NOT_NEEDED  # started after the leader's join window: it runs without us
    # Joined first, the database read after: the leader is waiting. The data loads between
    # joining and the assignment, while the leader builds its own trainer. A rank that joined
    # in time is almost always given shards; one that was not (the leader closed the window
    # first) has loaded into its cache for nothing.
    join(plane, boxes, rank)
    try:
        with session_scope(factory) as session:
            job = session.get(Job, job_id)
            if job is None or job.is_finished or job.attempt != attempt:
                return Outcome.NOT_NEEDED  # the job ended, or its leader restarted, before this ran
            job_data = load_input(session, blob_store(settings), job, JobSpec.read(job.spec),
                                  settings).job
    except (InvalidDataError, SpecError, ValueError) as exc:
        log.info("rank %d of job %s cannot load its data (%s); the leader reports it", rank,
                 job_id, exc)
        return Outcome.NOT_NEEDED
    assignment = await_assignment(plane, boxes, rank, settings.rank_join_s + ASSIGN_GRACE_S)
    if assignment is None:
        return Outcome.NOT_NEEDED  # joined too late: the leader trains without this rank
    owned, link = assignment
    served = serve_rank(link, rank, job_data, owned, settings.rank_timeout_s)
    log.info("rank %d of job %s served %d steps", rank, job_id, served)
    return f"served {served} steps"


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
        job.hold(owned)  # the rows of its shards, in one read, before the first round
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


@dataclass(frozen=True)
class Round:
    """A round for this rank to compute: the leader's number for it, and the steps done
    before it."""

    round: int
    step: int


class RankServer:
    """A rank between rounds: its shards (another block after a re-plan) and the round it
    last computed."""

    def __init__(self, job: JobData, rank: int, owned: list[int]) -> None:
        self.job, self.rank = job, rank
        self.shards = RankShards(job, owned)
        self.round = self.step = 0

    def next_work(self, message: Message) -> Round | None:
        """The round that ``message`` starts, or None: a message from before a re-plan, or
        the SUMS of the job's last step (the replica's last step: the leader ends the job)."""
        if message.kind in (PARAMS, REPLICA):
            if (assigned := message.shards.tolist()) != self.shards.owned:
                self.shards = RankShards(self.job, assigned)  # re-planned: a rank was lost
            self.shards.load(message)
            self.round, self.step = message.round, message.step
        elif (message.kind == SUMS and message.round == self.round
              and self.shards.replica is not None):
            self.shards.step_replica(message)
            self.round, self.step = self.round + 1, self.step + 1
        else:
            return None
        if self.step == self.job.total_steps:
            return None
        return Round(self.round, self.step)

    def reply(self, work: Round) -> Buffers:
        """Compute ``work``: its GRADS, ready to send."""
        shards = self.shards
        losses, states = shards.compute(work.step)
        return encode(GRADS, round=work.round, step=work.step, rank=self.rank,
                      shards=shards.owned, losses=losses, nodes=shards.nodes,
                      buffers=[*shards.sums, *states])


def serve_rank(link: Link, rank: int, job: JobData, owned: list[int], timeout: float) -> int:
    """Serve the rounds the leader starts over ``link``, from the block of shards ``owned``,
    until the link closes or the leader is silent for ``timeout`` s; the rounds served."""
    server = RankServer(job, rank, owned)
    served = 0
    reply: Buffers | None = None
    try:
        while True:
            # The one receive point. A reply goes with it: in a pair the leader's sums cross
            # it on the link, and neither side waits for the other to read.
            payload = (link.exchange(reply, timeout) if reply is not None
                       else link.receive(timeout))
            # A worker that is stopping leaves now, closing the link; its leader plans these
            # shards over the ranks left.
            if SHUTTING_DOWN.is_set():
                return served
            work = server.next_work(decode(payload))
            reply = server.reply(work) if work is not None else None
            served += work is not None
    except LinkClosed:
        return served
    finally:
        link.close()
