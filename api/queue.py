"""Enqueueing jobs for the workers, by task name only (the API never imports ``worker``).

The message is Celery's: task ``db.task_names.TRAIN_JOB`` with ``args=[job_id]``, as JSON,
sent through a client app of the API's own that only publishes.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu.exceptions import ChannelError, KombuError

from db.settings import Settings, get_settings
from db.task_names import TRAIN_JOB


class EnqueueError(RuntimeError):
    """The broker did not take the message."""


@lru_cache
def celery_client(broker_url: str) -> Celery:
    """A publisher on ``broker_url``, one per process and URL (it holds the connection pool)."""
    client = Celery("shardtrain-api", broker=broker_url)
    client.conf.update(task_serializer="json", accept_content=["json"])
    return client


def enqueue_job(job_id: str, *, settings: Settings | None = None) -> None:
    """Send job ``job_id`` to the workers; call it only once the job row is committed, since
    a worker may start on it at once."""
    broker_url = (settings or get_settings()).broker_url
    try:
        celery_client(broker_url).send_task(TRAIN_JOB, args=[job_id])
    except (KombuError, OSError) as error:
        raise EnqueueError(f"the broker did not take job {job_id}: {error}") from error


def broker_reachable(timeout_s: float, *, settings: Settings | None = None) -> bool:
    """Whether a connection to the broker opens within about ``timeout_s`` seconds."""
    broker_url = (settings or get_settings()).broker_url
    try:
        with celery_client(broker_url).connection_for_write(connect_timeout=timeout_s) as conn:
            # No retries: a readiness probe must answer within its own timeout.
            conn.ensure_connection(max_retries=0, timeout=timeout_s)
    except (KombuError, OSError):
        return False
    return True


def queue_depth(timeout_s: float, *, settings: Settings | None = None) -> int | None:
    """Messages waiting on the broker's task queue (jobs and rank tasks not yet taken by a
    worker); None when the broker does not answer within about ``timeout_s`` seconds."""
    client = celery_client((settings or get_settings()).broker_url)
    try:
        with client.connection_for_read(connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout_s)
            declared = conn.default_channel.queue_declare(
                queue=client.conf.task_default_queue, passive=True)
    except ChannelError:
        return 0  # Redis drops an empty list, so a drained queue does not exist
    except (KombuError, OSError):
        return None
    return int(declared.message_count)
