"""A leader's task body: one attempt at a job, from its claim to its outcome.

At-least-once delivery made idempotent: each delivery first claims the job's lease
(``db.queries.leases`` tells the protocol), and every write checks it (``worker.records``).
The progress writes are batched and run on a thread of their own (``worker.writer``): the
metrics every ``metrics_flush_steps`` steps or ``metrics_flush_s`` seconds, a checkpoint every
``checkpoint_interval_s``, so the steps never wait for the database. A cancel is acted on
once the write that read it has returned. Each outcome (succeeded, cancelled, failed, handed
back) is written in one transaction with the last rows, after the writes before it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from core.checkpoint import state_bytes
from core.training import DivergedError, StepEvent, Trainer
from db.blobs import blob_store
from db.engine import SessionFactory, get_session_factory, session_scope
from db.models import Job
from db.queries.leases import holds_lease, release_job
from db.settings import Settings, get_settings
from worker.claim import Claim, claim, internal_error_message, prepare
from worker.dispatch import RankLauncher, Requeue, launch_rank, requeue_job
from worker.exchange import RemoteRanks
from worker.joining import Gathering, launch_ranks
from worker.outcome import Outcome
from worker.records import Batch, Ending, LeaseLost, Progress, Records, RecordsFactory, fresh_job
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


def is_db_outage(exc: BaseException) -> bool:
    """The database failed or dropped this connection (PostgreSQL also ends a session left
    idle inside a transaction): retried, the job resumes from its checkpoint."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def run_job(job_id: str, *, factory: SessionFactory | None = None,
            settings: Settings | None = None, launch: RankLauncher | None = None,
            requeue: Requeue | None = None, writes: RecordsFactory | None = None,
            lease: int | None = None) -> Outcome:
    """Train job ``job_id`` to its end (or cancellation), as its leader; what became of
    this delivery. ``launch`` starts a rank task, ``requeue`` re-sends the job (default: by
    name, through the broker) and ``writes`` makes an attempt's ``Records``; ``lease`` is the
    attempt this caller held before a database outage. Raises DatabaseUnavailable."""
    factory = factory or get_session_factory()
    settings = settings or get_settings()
    try:
        with session_scope(factory) as session:
            claimed = claim(session, job_id, settings, lease)
    except DBAPIError as exc:
        if not is_db_outage(exc):
            raise
        raise DatabaseUnavailable(lease) from exc
    if isinstance(claimed, Outcome):
        return claimed
    try:
        records = (writes or Records)(factory, job_id, claimed.attempt, blob_store(settings))
        return _lead(job_id, claimed, factory, settings, launch or launch_rank,
                     requeue or requeue_job, records)
    except (DBAPIError, LeaseLost) as exc:
        return _lost(exc, factory, job_id, claimed.attempt)


def _lost(exc: DBAPIError | LeaseLost, factory: SessionFactory, job_id: str,
          attempt: int) -> Outcome:
    """After a write failed: superseded when another attempt holds the job (this leader was
    presumed dead while it could not write, and must not retry); else DatabaseUnavailable
    for an outage, and any other database error raised as it is."""
    if isinstance(exc, DBAPIError):
        if not is_db_outage(exc):
            raise exc
        if not _superseded(factory, job_id, attempt):
            raise DatabaseUnavailable(attempt) from exc
    log.warning("attempt %d lost the lease of job %s; stopping", attempt, job_id)
    return Outcome.SUPERSEDED


def _superseded(factory: SessionFactory, job_id: str, attempt: int) -> bool:
    """True when the database answers again and another attempt holds the job."""
    try:
        with session_scope(factory) as session:
            return not holds_lease(fresh_job(session, job_id), attempt)
    except DBAPIError:
        return False  # still unavailable: the retry will tell


def _lead(job_id: str, claimed: Claim, factory: SessionFactory, settings: Settings,
          launch: RankLauncher, requeue: Requeue, records: Records) -> Outcome:
    # The ranks start (join, load their data) and link to this leader while it builds its
    # own trainer; the claim is committed first, so that they find this attempt.
    spec = claimed.spec
    wanted = launch_ranks(job_id, claimed.attempt, spec.train, claimed.net, spec.max_ranks,
                          settings, launch)
    with Gathering(job_id, claimed.attempt, wanted, spec.train, claimed.net,
                   settings) as gathering:
        with session_scope(factory) as session:
            prepared = prepare(session, records.store, job_id, claimed, settings)
        if isinstance(prepared, Outcome):
            return prepared
        trainer = prepared.trainer
        exchange: RemoteRanks | None = None
        try:
            # Leaving waits for the write in flight: none outlives the attempt that made it.
            with Writer(job_id) as writer:
                # Checkpoint step 0 is written while the last ranks link (or the first steps
                # run), not in the loop's way; a job that dies before it is written starts
                # afresh from the same seed.
                if prepared.initial is not None:
                    writer.submit(partial(records.save_initial, prepared.initial))
                team = gathering.team()
                if team is not None:
                    exchange = RemoteRanks(team, spec.train.shards, trainer.params,
                                           settings.rank_timeout_s, job_id,
                                           local_sgd=trainer.local)
                    trainer.attach(exchange)
                trainer.hold_rows()  # its shards and the hold-out, as the ranks read theirs
                run = LeaderRun(trainer, prepared.progress, records, writer, settings,
                                exchange)
                log.info("attempt %d starts at step %d of %d on %d rank(s)", claimed.attempt,
                         trainer.step, trainer.total_steps, run.ranks)
                outcome = run.train()
        finally:
            if exchange is not None:
                exchange.close()
    if outcome is Outcome.HANDED_BACK:
        requeue(job_id)
    log.info("%s at step %d", outcome, trainer.step)
    return outcome


@dataclass
class LeaderRun:
    """A leader's training loop: its trainer, what it has recorded, where its writes go,
    and the ranks helping it (none: it trains alone)."""

    trainer: Trainer
    progress: Progress
    records: Records
    writer: Writer
    settings: Settings
    exchange: RemoteRanks | None = None
    started: float = field(default_factory=time.monotonic)
    last: StepEvent | None = None  # the last step's event

    @property
    def ranks(self) -> int:
        """Ranks training the job now, the leader included (fewer once one is lost)."""
        return self.exchange.ranks if self.exchange is not None else 1

    def _batch(self, now: float) -> Batch:
        return self.progress.take(self.last, now - self.started, self.ranks)

    def _stop(self, ending: Ending) -> None:
        """Write the last rows, a checkpoint and ``ending``, once the write in flight ended."""
        self.writer.wait()
        self.records.stop(self.trainer, self._batch(time.monotonic()), ending)

    def train(self) -> Outcome:
        """Train to the end, a cancel or a hand-back. Raises LeaseLost and outages (retried:
        the job resumes from its last checkpoint)."""
        try:
            return self._steps()
        except DivergedError as exc:
            # The parameters are those of the last finite step: keep them as a checkpoint.
            message = str(exc)
            self._stop(lambda _, job: job.mark_failed("diverged", message))
            return Outcome.FAILED
        except Exception as exc:
            if isinstance(exc, LeaseLost) or is_db_outage(exc):
                raise
            log.exception("job %s failed", self.records.job_id)
            self.writer.wait()
            self.records.fail("internal", internal_error_message(exc))
            return Outcome.FAILED

    def _steps(self) -> Outcome:
        trainer, settings, writer = self.trainer, self.settings, self.writer
        last_flush = last_checkpoint = step_started = self.started
        for self.last in trainer.steps():
            STEP_SECONDS.observe(time.monotonic() - step_started)
            self.progress.record(trainer, self.last)
            # A local SGD round has run whole before its steps come out one by one: the
            # state to checkpoint, cancel or hand back at exists between rounds only.
            at_round_boundary = trainer.at_sync
            now = time.monotonic()
            writer.poll()
            if (len(self.progress.pending) >= settings.metrics_flush_steps
                    or now - last_flush >= settings.metrics_flush_s):
                state = None
                if at_round_boundary and now - last_checkpoint >= settings.checkpoint_interval_s:
                    state, last_checkpoint = (trainer.step, state_bytes(trainer)), now
                writer.submit(partial(self.records.flush, self._batch(now), state))
                last_flush = now
            if writer.cancel_requested and at_round_boundary:
                self._stop(lambda _, job: job.mark_cancelled())
                return Outcome.CANCELLED
            # Checked at every step (a flag: no I/O), so a worker asked to stop hands the job
            # back within one step (or round) rather than finishing it first.
            if (SHUTTING_DOWN.is_set() and at_round_boundary
                    and trainer.step < trainer.total_steps):
                self._stop(self._release)
                return Outcome.HANDED_BACK
            # Restarted here, not at the loop's top: bookkeeping is not the step.
            step_started = time.monotonic()
        self.writer.wait()
        now = time.monotonic()
        self.records.finish(trainer, self._batch(now), self.last, now - self.started)
        return Outcome.SUCCEEDED

    def _release(self, session: Session, _: Job) -> None:
        """Hand the job back to the queue; the caller re-sends it, and the next claim
        resumes from the checkpoint written with it."""
        release_job(session, job_id=self.records.job_id, attempt=self.records.attempt)
