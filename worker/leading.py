"""A leader's start: how many ranks, their tasks, and the exchange with those that joined."""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.training import Trainer
from db.settings import Settings
from worker.dataplane import data_plane
from worker.links import local_address
from worker.planning import choose_ranks
from worker.presence import idle_workers
from worker.ranks import Mailboxes, RemoteRanks, gather_ranks

log = logging.getLogger(__name__)

TRAIN_JOB = "shardtrain.train_job"
TRAIN_RANK = "shardtrain.train_rank"

RankLauncher = Callable[[str, int, int], None]  # (job id, attempt, rank)


def launch_by_name(job_id: str, attempt: int, rank: int) -> None:
    from worker.app import celery_app

    celery_app.send_task(TRAIN_RANK, args=[job_id, attempt, rank])


def rank_limit(trainer: Trainer, cap: object, settings: Settings) -> int:
    """The most ranks this job may use: its shards and its spec's cap."""
    if trainer.local or settings.is_embedded:
        return 1  # local SGD keeps every replica here; the embedded worker is this thread
    return min(trainer.spec.shards, cap) if isinstance(cap, int) else trainer.spec.shards


def start_ranks(job_id: str, attempt: int, trainer: Trainer, cap: object, settings: Settings,
                launch: RankLauncher | None = None) -> RemoteRanks | None:
    """Start the other ranks and attach them to ``trainer``; None when it runs alone.

    ``cap`` is the spec's ``max_workers``: a number asks for that many ranks, ``auto`` lets
    the cost model choose; either way no more than the idle workers (``worker.presence``) can
    start. The rank tasks are sent at once, and those started within ``rank_join_s`` take
    part."""
    net = trainer.job.net
    wanted = rank_limit(trainer, cap, settings)
    if not isinstance(cap, int):
        wanted = choose_ranks(sizes=net.sizes, batch_size=trainer.spec.batch_size,
                              param_bytes=trainer.params.nbytes, limit=wanted)
    if wanted > 1:
        idle = idle_workers()
        if idle is not None:
            wanted = min(wanted, 1 + idle)
    if wanted == 1:
        return None
    plane = data_plane(settings.redis_url)
    boxes = Mailboxes(job_id, attempt)
    for rank in range(1, wanted):
        (launch or launch_by_name)(job_id, attempt, rank)
    # Ranks in other processes link to this one over TCP, at the address it has on the way
    # to Redis; without Redis they are threads here and link through memory.
    listen_on = local_address(settings.redis_url) if settings.redis_url else None
    team = gather_ranks(plane, boxes, wanted - 1, trainer.spec.shards, settings.rank_join_s,
                        listen_on, settings.rank_timeout_s)
    plane.drop(boxes.leader)
    log.info("job %s: %d of %d ranks joined", job_id, 1 + len(team.members), wanted)
    if not team.members:
        return None
    remote = RemoteRanks(team, trainer.spec.shards, trainer.params, settings.rank_timeout_s,
                         job_id)
    trainer.remote = remote
    return remote
