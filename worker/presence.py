"""Which workers are idle, so that a leader asks for no more ranks than can start now.

Each worker (one job slot, as compose runs them) belongs to a Redis set while it runs none of
our tasks: it enters when it is ready and after each task, and leaves when a task starts and
when it shuts down. A pool process killed mid-task (SIGKILL, the OOM killer) runs no
``task_postrun``: its worker enters again when the new pool process starts. Reading the set is
one round trip, where asking the workers through Celery's broadcast takes about a second on
Redis. A worker killed while idle stays in the set until it restarts; a leader may then ask
for a rank that nobody starts, which costs it the join window (``rank_join_s``) and nothing
else.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from db.settings import get_settings
from worker.redis_client import redis_client

log = logging.getLogger(__name__)

IDLE_WORKERS = "shardtrain:idle-workers"


def _redis() -> redis.Redis | None:
    url = get_settings().redis_url
    return redis_client(url) if url else None


def _update(add: bool, hostname: str | None) -> None:
    client = _redis()
    if client is None or not hostname:
        return
    try:
        if add:
            client.sadd(IDLE_WORKERS, hostname)
        else:
            client.srem(IDLE_WORKERS, hostname)
    except redis.RedisError as error:  # presence only sizes jobs: never fail a task for it
        log.warning("could not record worker %s as %s: %s", hostname,
                    "idle" if add else "busy", error)


def idle_workers() -> int | None:
    """Workers running none of our tasks; None when unknown (no Redis, or it failed)."""
    client = _redis()
    if client is None:
        return None
    try:
        return int(client.scard(IDLE_WORKERS))
    except redis.RedisError as error:
        log.warning("could not count idle workers: %s", error)
        return None


def _ours(task: Any) -> bool:
    return str(getattr(task, "name", "")).startswith("shardtrain.")


@worker_ready.connect
def _ready(sender: Any = None, **_: object) -> None:
    _update(True, getattr(sender, "hostname", None))


@worker_process_init.connect
def _pool_process_started(sender: Any = None, **_: object) -> None:
    # The sender is the worker's hostname. A pool process starts before any task reaches it,
    # so its worker is idle then (one job slot per worker).
    _update(True, sender if isinstance(sender, str) else None)


@worker_shutdown.connect
def _gone(sender: Any = None, **_: object) -> None:
    _update(False, getattr(sender, "hostname", None))


@task_prerun.connect
def _busy(task: Any = None, **_: object) -> None:
    if _ours(task):
        _update(False, task.request.hostname)


@task_postrun.connect
def _idle(task: Any = None, **_: object) -> None:
    if _ours(task):
        _update(True, task.request.hostname)
