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

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from db.base import utc_now
from db.models import Job
from db.queries.dml import affected_rows


def claim_job(session: Session, *, job_id: str, stall_timeout_s: float,
              held: int | None = None, now: datetime | None = None) -> int | None:
    """Take the lease of job ``job_id``: its new attempt number, or None when another leader
    holds a live lease (or the job has ended or was cancelled). ``held`` is the attempt the
    caller ran before, if any."""
    now = now or utc_now()
    expired = or_(Job.heartbeat_at.is_(None),
                  Job.heartbeat_at < now - timedelta(seconds=stall_timeout_s))
    running = and_(Job.status == "running",
                   or_(expired, Job.attempt == held) if held is not None else expired)
    # One round trip: the conditional UPDATE returns the attempt it made (RETURNING, on both
    # PostgreSQL and SQLite 3.35+), and the first claim's time is kept as the start.
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested.is_(False),
               or_(Job.status == "queued", running))
        .values(status="running", attempt=Job.attempt + 1, heartbeat_at=now, workers=1,
                started_at=func.coalesce(Job.started_at, now))
        .returning(Job.attempt)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).scalar_one_or_none()


def holds_lease(job: Job, attempt: int) -> bool:
    """Whether the leader of ``attempt`` still owns ``job`` (read fresh by the caller)."""
    return job.status == "running" and job.attempt == attempt


def release_job(session: Session, *, job_id: str, attempt: int) -> bool:
    """Hand the job back to the queue (``queued``, resumed from its checkpoint by the next
    claim); False if ``attempt`` no longer held it."""
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.attempt == attempt)
        .values(status="queued", workers=None)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(session, statement) == 1


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
    last_sign = Job.heartbeat_at.is_(None)
    stalled = or_(
        and_(Job.status == "running", or_(last_sign, Job.heartbeat_at < cutoff)),
        and_(Job.status == "queued", Job.created_at < cutoff,
             or_(last_sign, Job.heartbeat_at < cutoff)))
    candidates = session.execute(select(Job.id, Job.status, Job.attempt).where(stalled)).all()
    report = StallReport([], [])
    for job_id, status, attempt in candidates:
        same = (Job.id == job_id, Job.status == status, Job.attempt == attempt,
                or_(last_sign, Job.heartbeat_at < cutoff))
        if attempt >= max_attempts:
            message = (f"no progress for {stall_timeout_s:g} s (stall_timeout_s) on attempt "
                       f"{attempt} of max_attempts={max_attempts}")
            changed = affected_rows(session, update(Job).where(*same).values(
                status="failed", error_type="stalled", error_message=message, finished_at=now,
            ).execution_options(synchronize_session=False))
            if changed:
                report.failed.append(job_id)
        elif affected_rows(session, update(Job).where(*same).values(
                status="queued", heartbeat_at=now, workers=None,
        ).execution_options(synchronize_session=False)):
            report.requeued.append(job_id)
    return report
