"""A leader's start: how many ranks, their tasks, and the exchange with those that joined."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context

from core.network import Network
from core.optimizers import make_optimizer, state_arrays
from core.spec import TrainSpec
from core.training import Trainer
from db.settings import Settings
from worker.dispatch import RankLauncher, launch_rank
from worker.planning import choose_ranks
from worker.presence import idle_workers
from worker.ranks import RemoteRanks, Team, gather_ranks, slot_bytes_for
from worker.transport.handshake import local_address
from worker.transport.join_plane import JoinPlane, Mailboxes, join_plane

log = logging.getLogger(__name__)

def rank_limit(spec: TrainSpec, cap: object, settings: Settings) -> int:
    """The most ranks this job may use: its shards and its spec's cap; 1 where ranks cannot
    join (they join through Redis) or cannot start (the embedded worker is one thread)."""
    if settings.redis_url is None or settings.is_embedded:
        return 1
    return min(spec.shards, cap) if isinstance(cap, int) else spec.shards


def launch_ranks(job_id: str, attempt: int, spec: TrainSpec, net: Network, cap: object,
                 settings: Settings, launch: RankLauncher | None = None) -> int:
    """Send the tasks of ranks 1..P-1 of this attempt and return P, the leader included.

    ``cap`` is the spec's ``max_workers``: a number asks for that many ranks, ``auto`` lets
    the cost model choose; either way no more than the idle workers (``worker.presence``) can
    start. The leader sends them as soon as it holds the job, so that they start, join and
    load their data while it builds its own trainer."""
    wanted = rank_limit(spec, cap, settings)
    if not isinstance(cap, int):
        state_bytes = 0
        if spec.sync_every > 1:  # a local SGD round also carries each shard's optimizer state
            optimizer = make_optimizer(spec.optimizer, net.n_params, net.dtype)
            state_bytes = sum(a.nbytes for a in state_arrays(optimizer))
        wanted = choose_ranks(sizes=net.sizes, batch_size=spec.batch_size,
                              param_bytes=net.param_bytes, limit=wanted,
                              sync_every=spec.sync_every, shards=spec.shards,
                              shard_state_bytes=state_bytes)
    if wanted > 1:
        idle = idle_workers()
        if idle is not None:
            wanted = min(wanted, 1 + idle)
    for rank in range(1, wanted):
        (launch or launch_rank)(job_id, attempt, rank)
    return wanted


class Gathering:
    """The ranks of an attempt joining and linking (``gather_ranks``) on a thread of their
    own, while the leader loads its data and builds its trainer: the ranks link in the time
    the leader prepares instead of after it. ``attach`` hands those that joined to the
    trainer; leaving the block closes the links of any that were never attached (a leader
    that ends before training, on bad data or an outage, lets its ranks go at once)."""

    def __init__(self, job_id: str, attempt: int, wanted: int, spec: TrainSpec,
                 net: Network, settings: Settings, plane: JoinPlane | None = None) -> None:
        self._job_id, self._wanted, self._settings = job_id, wanted, settings
        self._team: Future[Team] | None = None
        self._attached = False
        if wanted == 1:
            return
        pool = ThreadPoolExecutor(max_workers=1,
                                  thread_name_prefix=f"shardtrain-gather-{job_id[:8]}")
        # In the job's logging context, which a new thread does not inherit.
        if plane is None:
            assert settings.redis_url is not None, "ranks join through Redis"
            plane = join_plane(settings.redis_url)
        self._team = pool.submit(copy_context().run, _gather_team, plane, job_id, attempt,
                                 wanted, spec, net, settings)
        pool.shutdown(wait=False)  # the thread ends with its one task; ``_team`` is waited on

    def attach(self, trainer: Trainer) -> RemoteRanks | None:
        """The exchange of ``trainer`` with the ranks that joined (the caller attaches it to
        the trainer); None when the leader runs alone. Waits for the gathering."""
        if self._team is None:
            return None
        team = self._team.result()
        self._attached = True
        log.info("job %s: %d of %d ranks joined", self._job_id, 1 + len(team.members),
                 self._wanted)
        if not team.members:
            return None
        return RemoteRanks(team, trainer.spec.shards, trainer.params,
                           self._settings.rank_timeout_s, self._job_id, local_sgd=trainer.local)

    def __enter__(self) -> Gathering:
        return self

    def __exit__(self, *_: object) -> None:
        if self._team is None or self._attached:
            return
        # Not waited for: a rank that joined but never links (it could not load the data
        # that stopped this leader too) would hold the leader for rank_timeout_s.
        self._team.add_done_callback(_close_links)


def _close_links(team: Future[Team]) -> None:
    """The links of a gathering that was never attached; a failed one has none."""
    if team.exception() is None:
        for link in team.result().links.values():
            link.close()


def _gather_team(plane: JoinPlane, job_id: str, attempt: int, wanted: int, spec: TrainSpec,
                 net: Network, settings: Settings) -> Team:
    boxes = Mailboxes(job_id, attempt)
    assert settings.redis_url is not None
    # The ranks link to this one over TCP, at the address it has on the way to Redis.
    listen_on = local_address(settings.redis_url)
    try:
        return gather_ranks(plane, boxes, wanted - 1, spec.shards, settings.rank_join_s,
                            listen_on, settings.rank_timeout_s,
                            shared_dir=settings.shared_memory_dir,
                            slot_bytes=slot_bytes_for(net.param_bytes))
    finally:
        plane.drop(boxes.leader)
