"""The watchdog: no job stays ``running`` (or ``queued``) forever without progress.

A thread of each worker process, every ``watchdog_interval_s``. Jobs whose leader wrote nothing
for ``stall_timeout_s`` are handed back to the queue and re-sent, or failed (``stalled``) after
``max_attempts`` (``db.queries.leases``). It runs in the workers, not in a beat scheduler or
the API: it needs only what they have (the database and the broker). Several at once are
harmless, since each job changes with one conditional UPDATE.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.exc import SQLAlchemyError

from db.engine import SessionFactory, get_session_factory, session_scope
from db.queries.leases import StallReport, requeue_stalled
from db.settings import Settings, get_settings
from worker.dispatch import Requeue, requeue_job

log = logging.getLogger(__name__)

_stop = threading.Event()


def check_stalled(factory: SessionFactory, settings: Settings, requeue: Requeue) -> StallReport:
    """One pass: hand back or fail the stalled jobs, then re-send those handed back (after the
    commit, so that the delivery finds them ``queued``)."""
    with session_scope(factory) as session:
        report = requeue_stalled(session, stall_timeout_s=settings.stall_timeout_s,
                                 max_attempts=settings.max_attempts)
    for job_id in report.requeued:
        log.warning("job %s stalled for %g s: re-enqueued", job_id, settings.stall_timeout_s)
        requeue(job_id)
    for job_id in report.failed:
        log.error("job %s stalled for %g s on its last attempt: failed", job_id,
                  settings.stall_timeout_s)
    return report


def _watch(settings: Settings) -> None:
    while not _stop.wait(settings.watchdog_interval_s):
        try:
            check_stalled(get_session_factory(), settings, requeue_job)
        except (SQLAlchemyError, OSError) as error:  # the next pass tries again
            log.warning("watchdog pass failed: %s", error)
        except Exception:  # a watchdog that dies silently is worse than a noisy one
            log.exception("watchdog pass failed")


@worker_ready.connect
def _start(**_: object) -> None:
    _stop.clear()
    threading.Thread(target=_watch, args=(get_settings(),), name="shardtrain-watchdog",
                     daemon=True).start()


@worker_shutdown.connect
def _end(**_: object) -> None:
    _stop.set()

