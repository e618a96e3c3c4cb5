"""Who runs a job: a lease, so that at-least-once delivery never runs two leaders at once.

Celery may deliver ``train_job`` for one job more than once: a redelivery after a crash, a
visibility timeout that expired while the leader still ran, a watchdog's re-enqueue. Each
delivery must first *claim* the job with one conditional UPDATE, which the database applies
atomically: only one of two concurrent claims matches, the loser drops its message.

The lease is ``(status='running', attempt)``, renewed by ``heartbeat_at`` at every write of the
leader. A claim succeeds when the job is ``queued`` (new, or handed back), when the lease has
expired (no heartbeat for ``stall_timeout_s``: its leader is presumed dead), or when the claimer
already holds it (``held``: a task retried after a database outage, by the same leader). Every
claim increments ``attempt``, so a leader that lost its lease sees a different attempt at its
next write and stops (``holds_lease``) instead of writing beside the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from db.base import utc_now
from db.models import Job
from db.queries.dml import affected_rows


def claim_job(session: Session, *, job_id: str, stall_timeout_s: float,
              held: int | None = None, now: datetime | None = None) -> int | None:
    """Take the lease of job ``job_id`` (``Job.claim``): its new attempt number, or None when
    another leader holds a live lease (or the job has ended or was cancelled). ``held`` is the
    attempt the caller ran before, if any."""
    # One round trip: the UPDATE returns the attempt it made (RETURNING, on both PostgreSQL
    # and SQLite 3.35+).
    statement = Job.claim(job_id, stall_timeout_s=stall_timeout_s, held=held,
                          now=now or utc_now())
    return session.execute(statement).scalar_one_or_none()


def holds_lease(job: Job, attempt: int) -> bool:
    """Whether the leader of ``attempt`` still owns ``job`` (read fresh by the caller)."""
    return job.status == "running" and job.attempt == attempt


def release_job(session: Session, *, job_id: str, attempt: int) -> bool:
    """Hand the job back to the queue (``Job.release``); False if ``attempt`` no longer held
    it."""
    return affected_rows(session, Job.release(job_id, attempt)) == 1


@dataclass(frozen=True)
class StallReport:
    """What one watchdog pass did: jobs to send to the workers again, and jobs it failed."""

    requeued: list[str]
    failed: list[str]


def requeue_stalled(session: Session, *, stall_timeout_s: float, max_attempts: int,
                    now: datetime | None = None) -> StallReport:
    """Hand back every job whose progress stalled for ``stall_timeout_s``, or fail it once it
    has used ``max_attempts`` attempts; the caller sends the ``requeued`` ids to the workers.

    Stalled means: ``running`` without a heartbeat since the cutoff (its leader died or hangs),
    or ``queued`` and neither created nor re-sent since then (its message may have been lost,
    e.g. by a broker restarted without persistence). Each row changes with a conditional UPDATE,
    so several watchdogs at once act once per job; the heartbeat of a re-sent queued job is
    set, so it is re-sent at most once per ``stall_timeout_s``.
    """
    now = now or utc_now()
    cutoff = now - timedelta(seconds=stall_timeout_s)
    stalled = or_(
        and_(Job.status == "running", Job.stalled(cutoff)),
        and_(Job.status == "queued", Job.created_at < cutoff, Job.stalled(cutoff)))
    candidates = session.execute(select(Job.id, Job.status, Job.attempt).where(stalled)).all()
    report = StallReport([], [])
    for job_id, status, attempt in candidates:
        if attempt >= max_attempts:
            message = (f"no progress for {stall_timeout_s:g} s (stall_timeout_s) on attempt "
                       f"{attempt} of max_attempts={max_attempts}")
            if affected_rows(session, Job.fail_stalled(job_id, status, attempt, cutoff=cutoff,
                                                       message=message, now=now)):
                report.failed.append(job_id)
        elif affected_rows(session, Job.requeue_stalled(job_id, status, attempt, cutoff=cutoff,
                                                        now=now)):
            report.requeued.append(job_id)
    return report
