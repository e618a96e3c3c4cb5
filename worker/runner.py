"""Running one job on the core, with everything it produces written to the database.

At-least-once execution made idempotent: a delivery first claims the job's lease
(``db.queries.leases``), so a duplicate delivery never runs a second leader beside a live one;
a job redelivered after a crash resumes from its latest checkpoint, and the metrics it replays
overwrite the same (job, step) rows. Every write checks the lease first (``worker.records``).
Writes are batched (SPEC section 10): metrics and progress every ``metrics_flush_steps`` steps
or ``metrics_flush_s`` seconds, checkpoints every ``checkpoint_interval_s`` seconds, so the hot
loop makes no SQL round trip per step; and they run on a thread of their own
(``worker.writer``), so the steps never wait for them. A cancel is seen when the write that
read it returns, a few steps after it. The outcomes (succeeded, cancelled, failed, handed
back) are each written in one transaction with the last rows, once the writes before them
have ended."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from core.checkpoint import restore, state_bytes
from core.data import InvalidDataError
from core.network import Network
from core.spec import SpecError, TrainSpec
from core.training import DivergedError, StepEvent, Trainer
from db.engine import SessionFactory, get_session_factory, session_scope
from db.models import Job
from db.queries.checkpoints import latest_checkpoint
from db.queries.leases import claim_job, holds_lease, release_job
from db.queries.metrics import rewind_to_checkpoint
from db.settings import Settings, get_settings
from worker import records
from worker.dispatch import RankLauncher, Requeue, requeue_job
from worker.exchange import RemoteRanks
from worker.joining import Gathering, launch_ranks
from worker.loading import load_input, planned_network
from worker.records import LeaseLost, Progress, fresh_job, owned
from worker.shutdown import SHUTTING_DOWN
from worker.telemetry import STEP_SECONDS
from worker.writer import Writer

log = logging.getLogger(__name__)

class DatabaseUnavailable(Exception):
    """The database failed; retry with ``lease`` (the attempt this leader held, if any), so
    that the retry resumes the job as the same leader instead of waiting for its lease to
    expire."""

    def __init__(self, lease: int | None) -> None:
        super().__init__(f"the database is unavailable (lease {lease})")
        self.lease = lease


def _outage(exc: BaseException) -> bool:
    """The database failed or dropped this connection (PostgreSQL also ends a session left
    idle inside a transaction): retried, the job resumes from its checkpoint."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


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
            claimed = _claim(session, job_id, settings, lease)
    except DBAPIError as exc:
        if not _outage(exc):
            raise
        raise DatabaseUnavailable(lease) from exc
    if isinstance(claimed, str):
        return claimed
    attempt, spec, net, cap = claimed
    try:
        # The ranks start (join, load their data) and link to this leader while it builds
        # its own trainer; the claim is committed first, so that they find this attempt.
        wanted = launch_ranks(job_id, attempt, spec, net, cap, settings, launch)
        with Gathering(job_id, attempt, wanted, spec, net, settings) as gathering:
            with session_scope(factory) as session:
                started = _prepare(session, job_id, attempt)
            if isinstance(started, str):
                return started
            trainer, progress, initial = started
            return _lead(job_id, attempt, trainer, progress, initial, gathering, factory,
                         settings, requeue or requeue_job)
    except DBAPIError as exc:
        if not _outage(exc):
            raise
        if not _superseded(factory, job_id, attempt):
            raise DatabaseUnavailable(attempt) from exc
    except LeaseLost:
        pass
    # Only the handlers above come here (the block returns): another attempt holds the job.
    log.warning("attempt %d lost the lease of job %s; stopping", attempt, job_id)
    return "superseded"


def _internal(exc: Exception) -> str:
    """The error message of a job failed by a fault of the service's own (``internal``)."""
    return f"{type(exc).__name__}: {exc}"


def _superseded(factory: SessionFactory, job_id: str, attempt: int) -> bool:
    """True when the database answers again and another attempt holds the job: this leader
    was presumed dead while it could not write (stopped, or cut off), and must not retry."""
    try:
        with session_scope(factory) as session:
            return not holds_lease(fresh_job(session, job_id), attempt)
    except DBAPIError:
        return False  # still unavailable: the retry will tell


def _claim(session: Session, job_id: str, settings: Settings, lease: int | None
           ) -> str | tuple[int, TrainSpec, Network, object]:
    """Claim the job: its attempt, numeric spec, network and ``max_workers``; or a string
    saying why this delivery has nothing to do."""
    # The claim first (one conditional UPDATE), and the job read once, after it: whatever the
    # claim found, this reads what it left.
    attempt = claim_job(session, job_id=job_id, stall_timeout_s=settings.stall_timeout_s,
                        held=lease)
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        log.warning("job %s does not exist; dropping the message", job_id)
        return "missing"
    if attempt is None:
        if job.is_finished:
            return job.status  # a redelivered message for a job that has already ended
        if job.cancel_requested and job.status == "queued":
            rewind_to_checkpoint(session, job)  # handed back by the watchdog, its leader dead
            job.mark_cancelled()
            return job.status
        # A duplicate delivery while a live leader holds the job (or it is being cancelled
        # by it): dropping the message is safe, the watchdog re-sends a job that stalls.
        log.info("job %s is led by a live attempt; dropping this duplicate delivery", job_id)
        return "duplicate"
    try:
        spec, net = planned_network(session, job)
    except (InvalidDataError, SpecError, ValueError) as exc:
        job.mark_failed("invalid_data", str(exc))
        return job.status
    except DBAPIError:
        raise  # an outage: retried by the caller
    except Exception as exc:
        # A fault of the service's own, which a retry would meet again: the job fails now
        # instead of staying queued (or running) until the watchdog gives up on it.
        log.exception("job %s could not be planned", job_id)
        job.mark_failed("internal", _internal(exc))
        return job.status
    return attempt, spec, net, job.spec.get("max_workers", "auto")


def _prepare(session: Session, job_id: str, attempt: int
             ) -> str | tuple[Trainer, Progress, bytes | None]:
    """The trainer of the claimed job at its latest checkpoint, its progress, and the state
    to save as checkpoint step 0 if it has none; or the job's status when its data cannot
    train."""
    job = owned(session, job_id, attempt)
    try:
        data = load_input(session, job)
        trainer = Trainer(data.spec, data.X, data.y, init=data.init, submitted=data.submitted,
                          checked=True, targets=data.targets)
    except (InvalidDataError, SpecError, ValueError) as exc:
        job.mark_failed("invalid_data", str(exc))
        return job.status
    except DBAPIError:
        raise
    except Exception as exc:  # as in _claim
        log.exception("job %s could not be loaded", job_id)
        job.mark_failed("internal", _internal(exc))
        return job.status
    progress = Progress(best_val_loss=job.best_val_loss, best_step=job.best_step)
    checkpoint = latest_checkpoint(session, job_id=job_id)
    if checkpoint is None:
        return trainer, progress, state_bytes(trainer)
    restore(trainer, checkpoint.state)
    return trainer, progress, None


def _lead(job_id: str, attempt: int, trainer: Trainer, progress: Progress,
          initial: bytes | None, gathering: Gathering, factory: SessionFactory,
          settings: Settings, requeue: Requeue) -> str:
    remote: RemoteRanks | None = None

    def ranks() -> int:
        return remote.ranks if remote is not None else 1

    try:
        # Leaving waits for the write in flight: none outlives the attempt that made it.
        with Writer(job_id) as writer:
            # Checkpoint step 0 is written while the last ranks link (or the first steps run),
            # not in the loop's way; a job that dies before it is written starts afresh
            # from the same seed.
            if initial is not None:
                writer.submit(partial(records.save_initial, factory, job_id, attempt,
                                      initial))
            team = gathering.team()
            if team is not None:
                remote = RemoteRanks(team, trainer.spec.shards, trainer.params,
                                     settings.rank_timeout_s, job_id, local_sgd=trainer.local)
                trainer.attach(remote)
            log.info("attempt %d starts at step %d of %d on %d rank(s)", attempt, trainer.step,
                     trainer.total_steps, ranks())
            status = _train(job_id, attempt, trainer, progress, writer, factory, settings,
                            ranks)
        if status == "handed back":
            requeue(job_id)
        log.info("%s at step %d", status, trainer.step)
        return status
    finally:
        if remote is not None:
            remote.close()


def _train(job_id: str, attempt: int, trainer: Trainer, progress: Progress, writer: Writer,
           factory: SessionFactory, settings: Settings, ranks: Callable[[], int]) -> str:
    """Train to the end; the progress writes go to ``writer``, so that the steps never wait
    for the database, except for the outcome's last write. Each write records how many
    ``ranks`` train the job then (fewer once one is lost)."""
    start = last_flush = last_checkpoint = step_started = time.monotonic()
    event: StepEvent | None = None

    def stop(outcome: Callable[[Session, Job], None]) -> None:
        writer.wait()
        records.stop(factory, job_id, attempt, trainer,
                     progress.take(event, time.monotonic() - start, ranks()), outcome)

    try:
        for event in trainer.steps():
            STEP_SECONDS.observe(time.monotonic() - step_started)
            progress.record(trainer, event)
            # A local SGD round has run whole before its steps come out one by one: the
            # state to checkpoint, cancel or hand back at exists between rounds only.
            whole = trainer.at_sync
            now = time.monotonic()
            writer.poll()
            if (len(progress.pending) >= settings.metrics_flush_steps
                    or now - last_flush >= settings.metrics_flush_s):
                state = None
                if whole and now - last_checkpoint >= settings.checkpoint_interval_s:
                    state, last_checkpoint = (trainer.step, state_bytes(trainer)), now
                writer.submit(partial(records.flush, factory, job_id, attempt,
                                      progress.take(event, now - start, ranks()), state))
                last_flush = now
            if writer.cancel_requested and whole:
                stop(lambda _, job: job.mark_cancelled())
                return "cancelled"
            # Checked at every step (a flag: no I/O), so a worker asked to stop hands the job
            # back within one step (or round) rather than finishing it first.
            if SHUTTING_DOWN.is_set() and whole and trainer.step < trainer.total_steps:
                stop(lambda session, _: _release(session, job_id, attempt))
                return "handed back"
            # Restarted here, not at the loop's top: bookkeeping is not the step.
            step_started = time.monotonic()
    except DivergedError as exc:
        # The parameters are those of the last finite step: keep them as a checkpoint.
        message = str(exc)
        stop(lambda _, job: job.mark_failed("diverged", message))
        return "failed"
    except Exception as exc:
        if isinstance(exc, LeaseLost) or _outage(exc):
            raise  # an outage is retried and resumes from the last checkpoint
        log.exception("job %s failed", job_id)
        writer.wait()
        with session_scope(factory) as session:
            owned(session, job_id, attempt).mark_failed("internal", _internal(exc))
        return "failed"
    writer.wait()
    seconds = time.monotonic() - start
    return records.finish(factory, job_id, attempt, trainer,
                          progress.take(event, seconds, ranks()), event, seconds)


def _release(session: Session, job_id: str, attempt: int) -> None:
    """Hand the job back to the queue; the caller re-sends it, and the next claim resumes
    from the checkpoint written with it."""
    release_job(session, job_id=job_id, attempt=attempt)
