"""Running one job on the core, with everything it produces written to the database.

At-least-once execution made idempotent: a delivery first claims the job's lease
(``db.queries.leases``), so a duplicate delivery never runs a second leader beside a live one;
a job redelivered after a crash resumes from its latest checkpoint, and the metrics it replays
overwrite the same (job, step) rows. Every write checks the lease first, so a leader that lost
it (presumed dead, then replaced) stops instead of writing beside its successor. Writes are
batched (SPEC section 10): metrics and progress every ``metrics_flush_steps`` steps or
``metrics_flush_s`` seconds, checkpoints every ``checkpoint_interval_s`` seconds, so the hot
loop makes no SQL round trip per step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.data import InvalidDataError
from core.spec import SpecError
from core.training import DivergedError, StepEvent, Trainer
from db.engine import SessionFactory, get_session_factory, session_scope
from db.models import Job
from db.queries.checkpoints import (
    latest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    save_weights,
)
from db.queries.leases import claim_job, holds_lease, release_job
from db.queries.metrics import MetricRow, upsert_metrics
from db.settings import Settings, get_settings
from worker.leading import TRAIN_JOB, RankLauncher, start_ranks
from worker.loading import load_input
from worker.shutdown import SHUTTING_DOWN
from worker.telemetry import STEP_SECONDS, TimedRounds

log = logging.getLogger(__name__)

# Checkpoints kept besides step 0 (the initial weights): the latest to resume from, and the one
# before it in case the latest was being written when the worker died.
CHECKPOINTS_KEPT = 2

Requeue = Callable[[str], None]
"""Sends job ``job_id`` to the workers again."""


def requeue_by_name(job_id: str) -> None:
    from worker.app import celery_app

    celery_app.send_task(TRAIN_JOB, args=[job_id])


class LeaseLost(Exception):
    """This leader's attempt no longer owns the job: it was presumed dead and replaced, or
    the job was handed back. It must stop without writing."""


class DatabaseUnavailable(Exception):
    """The database failed; retry with ``lease`` (the attempt this leader held, if any), so
    that the retry resumes the job as the same leader instead of waiting for its lease to
    expire."""

    def __init__(self, lease: int | None) -> None:
        super().__init__(f"the database is unavailable (lease {lease})")
        self.lease = lease


@dataclass
class Progress:
    """What the loop has produced since the last write."""

    pending: list[MetricRow] = field(default_factory=list)
    best_val_loss: float | None = None
    best_step: int | None = None
    best_weights: bytes | None = None  # set when a better epoch has not been written yet
    rows: int = 0


def run_job(job_id: str, *, factory: SessionFactory | None = None,
            settings: Settings | None = None, launch: RankLauncher | None = None,
            requeue: Requeue | None = None, lease: int | None = None) -> str:
    """Train job ``job_id`` to its end (or cancellation), as its leader; return its final
    status, or what became of this delivery. ``launch`` starts a rank task and ``requeue``
    re-sends the job (default: by name, through the broker); ``lease`` is the attempt that
    this caller held before a database outage (see ``DatabaseUnavailable``)."""
    factory = factory or get_session_factory()
    settings = settings or get_settings()
    try:
        with session_scope(factory) as session:
            started = _start(session, job_id, settings, lease)
    except OperationalError as exc:
        raise DatabaseUnavailable(lease) from exc
    if isinstance(started, str):
        return started
    attempt, trainer, progress, cap = started
    try:
        return _lead(job_id, attempt, trainer, progress, cap, factory, settings, launch,
                     requeue or requeue_by_name)
    except OperationalError as exc:
        raise DatabaseUnavailable(attempt) from exc
    except LeaseLost:
        log.warning("attempt %d lost the lease of job %s at step %d; stopping", attempt,
                    job_id, trainer.step)
        return "superseded"


def _start(session: Session, job_id: str, settings: Settings, lease: int | None
           ) -> str | tuple[int, Trainer, Progress, object]:
    """Claim the job and build its trainer at its latest checkpoint; or a string saying why
    this delivery has nothing to do."""
    job = session.get(Job, job_id)
    if job is None:
        log.warning("job %s does not exist; dropping the message", job_id)
        return "missing"
    if job.is_finished:
        return job.status  # a redelivered message for a job that has already ended
    if job.cancel_requested and job.status == "queued":
        job.mark_cancelled()
        return job.status
    attempt = claim_job(session, job_id=job_id, stall_timeout_s=settings.stall_timeout_s,
                        held=lease)
    if attempt is None:
        # A duplicate delivery while a live leader holds the job (or it is being cancelled
        # by it): dropping the message is safe, the watchdog re-sends a job that stalls.
        log.info("job %s is led by a live attempt; dropping this duplicate delivery", job_id)
        return "duplicate"
    job = _job(session, job_id)
    try:
        data = load_input(session, job)
        trainer = Trainer(data.spec, data.X, data.y, init=data.init, submitted=data.submitted)
    except (InvalidDataError, SpecError, ValueError) as exc:
        job.mark_failed("invalid_data", str(exc))
        return job.status
    progress = Progress(best_val_loss=job.best_val_loss, best_step=job.best_step)
    checkpoint = latest_checkpoint(session, job_id=job_id)
    if checkpoint is None:
        save_checkpoint(session, job_id=job_id, step=0, state=trainer.state_bytes())
    else:
        trainer.restore(checkpoint.state)
    return attempt, trainer, progress, job.spec.get("max_workers", "auto")


def _lead(job_id: str, attempt: int, trainer: Trainer, progress: Progress, cap: object,
          factory: SessionFactory, settings: Settings, launch: RankLauncher | None,
          requeue: Requeue) -> str:
    remote = start_ranks(job_id, attempt, trainer, cap, settings, launch)
    if remote is not None:
        trainer.remote = TimedRounds(remote)
        with session_scope(factory) as session:
            _owned(session, job_id, attempt).workers = remote.ranks
    log.info("attempt %d starts at step %d of %d on %d rank(s)", attempt, trainer.step,
             trainer.total_steps, remote.ranks if remote is not None else 1)
    try:
        status = _train(job_id, attempt, trainer, progress, factory, settings)
        if status == "handed back":
            requeue(job_id)
        log.info("%s at step %d", status, trainer.step)
        return status
    finally:
        if remote is not None:
            remote.close()


def _train(job_id: str, attempt: int, trainer: Trainer, progress: Progress,
           factory: SessionFactory, settings: Settings) -> str:
    start = last_flush = last_checkpoint = step_started = time.monotonic()
    event: StepEvent | None = None
    try:
        for event in trainer.steps():
            STEP_SECONDS.observe(time.monotonic() - step_started)
            _record(progress, trainer, event)
            now = time.monotonic()
            if (len(progress.pending) >= settings.metrics_flush_steps
                    or now - last_flush >= settings.metrics_flush_s):
                state = None
                if now - last_checkpoint >= settings.checkpoint_interval_s:
                    state, last_checkpoint = trainer.state_bytes(), now
                if _flush(factory, job_id, attempt, trainer, progress, event, state,
                          now - start):
                    return "cancelled"
                last_flush = now
            # Checked at every step (a flag: no I/O), so a worker asked to stop hands the job
            # back within one step rather than finishing it first.
            if SHUTTING_DOWN.is_set() and trainer.step < trainer.total_steps:
                _hand_back(factory, job_id, attempt, trainer, progress, event,
                           time.monotonic() - start)
                return "handed back"
            # Restarted here, not at the loop's top: bookkeeping and writes are not the step.
            step_started = time.monotonic()
    except DivergedError as exc:
        # The parameters are those of the last finite step: keep them as a checkpoint.
        with session_scope(factory) as session:
            job = _write(session, job_id, attempt, progress, event,
                         time.monotonic() - start)
            save_checkpoint(session, job_id=job_id, step=trainer.step, state=trainer.state_bytes())
            job.mark_failed("diverged", str(exc))
        return "failed"
    except Exception as exc:
        if isinstance(exc, OperationalError | LeaseLost):
            raise  # an outage is retried and resumes from the last checkpoint
        log.exception("job %s failed", job_id)
        with session_scope(factory) as session:
            _owned(session, job_id, attempt).mark_failed(
                "internal", f"{type(exc).__name__}: {exc}")
        return "failed"
    return _finish(factory, job_id, attempt, trainer, progress, event, time.monotonic() - start)


def _record(progress: Progress, trainer: Trainer, event: StepEvent) -> None:
    progress.pending.append(
        (event.step, event.epoch, event.train_loss, event.val_loss, event.val_accuracy))
    progress.rows += event.rows
    if event.val_loss is not None and (progress.best_val_loss is None
                                       or event.val_loss < progress.best_val_loss):
        progress.best_val_loss, progress.best_step = event.val_loss, event.step
        progress.best_weights = trainer.model().to_npz()


def _flush(factory: SessionFactory, job_id: str, attempt: int, trainer: Trainer,
           progress: Progress, event: StepEvent, state: bytes | None, seconds: float) -> bool:
    """Write what is pending; True when the job was cancelled (and is now marked so)."""
    with session_scope(factory) as session:
        job = _write(session, job_id, attempt, progress, event, seconds)
        if job.cancel_requested:
            save_checkpoint(session, job_id=job_id, step=trainer.step, state=trainer.state_bytes())
            job.mark_cancelled()
            return True
        if state is not None:
            save_checkpoint(session, job_id=job_id, step=trainer.step, state=state)
            prune_checkpoints(session, job_id=job_id, keep=CHECKPOINTS_KEPT)
    return False


def _hand_back(factory: SessionFactory, job_id: str, attempt: int, trainer: Trainer,
               progress: Progress, event: StepEvent | None, seconds: float) -> None:
    """Write what is pending and a checkpoint of this step, and return the job to the queue;
    the caller re-sends it, and the next claim resumes from this very step."""
    with session_scope(factory) as session:
        _write(session, job_id, attempt, progress, event, seconds)
        save_checkpoint(session, job_id=job_id, step=trainer.step, state=trainer.state_bytes())
        prune_checkpoints(session, job_id=job_id, keep=CHECKPOINTS_KEPT)
        release_job(session, job_id=job_id, attempt=attempt)


def _write(session: Session, job_id: str, attempt: int, progress: Progress,
           event: StepEvent | None, seconds: float) -> Job:
    # The lease first: a replaced leader must not write beside its successor.
    job = _owned(session, job_id, attempt)
    upsert_metrics(session, job_id=job_id, rows=progress.pending)
    progress.pending = []
    if progress.best_weights is not None and progress.best_step is not None:
        save_weights(session, job_id=job_id, kind="best", step=progress.best_step,
                     data=progress.best_weights)
        progress.best_weights = None
    if event is not None:
        job.mark_progress(event.epoch, event.step)
    job.best_val_loss, job.best_step = progress.best_val_loss, progress.best_step
    job.samples_per_s = progress.rows / seconds if seconds > 0 else None
    return job


def _finish(factory: SessionFactory, job_id: str, attempt: int, trainer: Trainer,
            progress: Progress, event: StepEvent | None, seconds: float) -> str:
    model = trainer.model().to_npz()
    with session_scope(factory) as session:
        job = _write(session, job_id, attempt, progress, event, seconds)
        save_weights(session, job_id=job_id, kind="final", step=trainer.step, data=model)
        if job.best_step is None:  # no validation rows: the final weights are the best known
            save_weights(session, job_id=job_id, kind="best", step=trainer.step, data=model)
        save_checkpoint(session, job_id=job_id, step=trainer.step, state=trainer.state_bytes())
        prune_checkpoints(session, job_id=job_id, keep=CHECKPOINTS_KEPT)
        last = event
        job.mark_succeeded(
            final_train_loss=last.epoch_train_loss if last else None,
            final_val_loss=last.val_loss if last else None,
            final_val_accuracy=last.val_accuracy if last else None,
            best_val_loss=job.best_val_loss, best_step=job.best_step,
            samples_per_s=job.samples_per_s, seconds=seconds)
        return job.status


def _job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise RuntimeError(f"job {job_id} vanished while running")
    return job


def _owned(session: Session, job_id: str, attempt: int) -> Job:
    """The job, fresh, if ``attempt`` still holds its lease; else ``LeaseLost``."""
    job = _job(session, job_id)
    if not holds_lease(job, attempt):
        raise LeaseLost(f"job {job_id} is {job.status} at attempt {job.attempt}, not {attempt}")
    return job
