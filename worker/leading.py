"""A leader's start: how many ranks, their tasks, and the exchange with those that joined."""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.network import Network
from core.optimizers import make_optimizer, state_arrays
from core.spec import TrainSpec
from core.training import Trainer
from db.settings import Settings
from worker.dataplane import data_plane
from worker.links import local_address
from worker.planning import choose_ranks
from worker.presence import idle_workers
from worker.ranks import Mailboxes, RemoteRanks, gather_ranks, slot_bytes_for

log = logging.getLogger(__name__)

TRAIN_JOB = "shardtrain.train_job"
TRAIN_RANK = "shardtrain.train_rank"

RankLauncher = Callable[[str, int, int], None]  # (job id, attempt, rank)


def launch_by_name(job_id: str, attempt: int, rank: int) -> None:
    from worker.app import celery_app

    celery_app.send_task(TRAIN_RANK, args=[job_id, attempt, rank])


def rank_limit(spec: TrainSpec, cap: object, settings: Settings) -> int:
    """The most ranks this job may use: its shards and its spec's cap."""
    if settings.is_embedded:
        return 1  # the embedded worker is this thread
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
                              param_bytes=net.n_params * net.dtype.itemsize, limit=wanted,
                              sync_every=spec.sync_every, shards=spec.shards,
                              shard_state_bytes=state_bytes)
    if wanted > 1:
        idle = idle_workers()
        if idle is not None:
            wanted = min(wanted, 1 + idle)
    for rank in range(1, wanted):
        (launch or launch_by_name)(job_id, attempt, rank)
    return wanted


def gather(job_id: str, attempt: int, wanted: int, trainer: Trainer,
           settings: Settings) -> RemoteRanks | None:
    """Attach to ``trainer`` the ranks that join within ``rank_join_s`` of the ``wanted``
    (the leader included); None when it runs alone."""
    if wanted == 1:
        return None
    plane = data_plane(settings.redis_url)
    boxes = Mailboxes(job_id, attempt)
    # Ranks in other processes link to this one over TCP, at the address it has on the way
    # to Redis; without Redis they are threads here and link through memory.
    listen_on = local_address(settings.redis_url) if settings.redis_url else None
    team = gather_ranks(plane, boxes, wanted - 1, trainer.spec.shards, settings.rank_join_s,
                        listen_on, settings.rank_timeout_s,
                        shared_dir=settings.shared_memory_dir,
                        slot_bytes=slot_bytes_for(trainer.params))
    plane.drop(boxes.leader)
    log.info("job %s: %d of %d ranks joined", job_id, 1 + len(team.members), wanted)
    if not team.members:
        return None
    remote = RemoteRanks(team, trainer.spec.shards, trainer.params, settings.rank_timeout_s,
                         job_id, local_sgd=trainer.local)
    trainer.remote = remote
    return remote
