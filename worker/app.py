"""The Celery app, configured from the shared settings; tasks live in ``worker.tasks``.

``celery -A worker.app worker`` starts a worker process; ``shardtrain serve`` runs one in a
thread of its own process on the in-process broker.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import setup_logging, worker_process_init

from db.engine import get_engine
from db.logs import configure_logging
from db.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("shardtrain", include=["worker.tasks"])
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        # JSON only: a pickled message on the broker is refused, never executed.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A job is acknowledged only when it has finished, and handed back if the worker dies,
        # so a crash costs at most the steps since the last checkpoint.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Above the longest job: otherwise Redis hands a running job to a second worker.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # The messages of a dead worker come back after the visibility timeout, once a
            # live worker looks: every restore interval (not every tenth, kombu's default).
            "unacked_restore_interval": settings.broker_restore_interval_s,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


@setup_logging.connect
def _structured_logs(loglevel: int | str | None = None, **_: object) -> None:
    """A ``celery worker`` process logs the structured lines of every shardtrain process
    (job id and rank on each) instead of Celery's own format."""
    configure_logging(get_settings(), loglevel or logging.INFO)


@worker_process_init.connect
def _forget_inherited_connections(**_: object) -> None:
    """A pool process forked from the worker inherits its pooled database connections (the
    watchdog's): two processes on one connection would interleave their statements. The
    child drops them from its pool without closing the parent's sockets."""
    get_engine().dispose(close=False)


celery_app = make_celery(get_settings())
