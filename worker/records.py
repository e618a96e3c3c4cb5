"""What a leader writes about its job: progress batches, checkpoints and the final outcome.

Every write first checks that the leader's attempt still holds the job's lease, so a leader
that was presumed dead and replaced stops (``LeaseLost``) instead of writing beside its
successor. A ``Batch`` is a snapshot of what the training loop recorded since its last write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core.checkpoint import state_bytes
from core.training import StepEvent, Trainer
from db.blobs import BlobStore
from db.engine import SessionFactory, session_scope
from db.models import Job
from db.queries.checkpoints import (
    prune_checkpoints,
    save_checkpoint,
    save_final,
    save_weights,
)
from db.queries.leases import holds_lease
from db.queries.metrics import MetricRow, drop_metrics_after, upsert_metrics

# Checkpoints kept besides step 0 (the initial weights): the latest to resume from, and the one
# before it in case the latest was being written when the worker died.
CHECKPOINTS_KEPT = 2


class LeaseLost(Exception):
    """This leader's attempt no longer owns the job: it was presumed dead and replaced, or
    the job was handed back. It must stop without writing."""


@dataclass(frozen=True)
class Batch:
    """One write's worth of progress."""

    rows: list[MetricRow]
    step: int | None  # the last step recorded, with its epoch
    epoch: int | None
    best_val_loss: float | None
    best_step: int | None
    best_weights: bytes | None  # set when a better epoch has not been written yet
    samples_per_s: float | None
    ranks: int  # training the job as of the batch's last step


@dataclass
class Progress:
    """What the loop has recorded since the last write."""

    pending: list[MetricRow] = field(default_factory=list)
    best_val_loss: float | None = None
    best_step: int | None = None
    best_weights: bytes | None = None
    rows: int = 0

    def record(self, trainer: Trainer, event: StepEvent) -> None:
        self.pending.append(
            (event.step, event.epoch, event.train_loss, event.val_loss, event.val_accuracy))
        self.rows += event.rows
        if event.val_loss is not None and (self.best_val_loss is None
                                           or event.val_loss < self.best_val_loss):
            self.best_val_loss, self.best_step = event.val_loss, event.step
            self.best_weights = trainer.model().to_npz()

    def take(self, event: StepEvent | None, seconds: float, ranks: int) -> Batch:
        """What is pending, as of ``event`` after ``seconds`` of training on ``ranks``;
        pending is then empty."""
        batch = Batch(rows=self.pending, step=event.step if event else None,
                      epoch=event.epoch if event else None, best_val_loss=self.best_val_loss,
                      best_step=self.best_step, best_weights=self.best_weights,
                      samples_per_s=self.rows / seconds if seconds > 0 else None, ranks=ranks)
        self.pending, self.best_weights = [], None
        return batch


def leased_job(session: Session, job_id: str, attempt: int) -> Job:
    """The job, fresh, if ``attempt`` still holds its lease; else ``LeaseLost``."""
    job = fresh_job(session, job_id)
    if not holds_lease(job, attempt):
        raise LeaseLost(f"job {job_id} is {job.status} at attempt {job.attempt}, not {attempt}")
    return job


def fresh_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise RuntimeError(f"job {job_id} vanished while running")
    return job


Ending = Callable[[Session, Job], None]
"""How a stopped job ends, written with its last rows: cancelled, failed or handed back."""


class Records:
    """The writes of one leader's attempt at a job, each one transaction on ``factory``'s
    database; every one first checks the lease (``LeaseLost``)."""

    def __init__(self, factory: SessionFactory, job_id: str, attempt: int,
                 store: BlobStore) -> None:
        self.factory, self.job_id, self.attempt, self.store = factory, job_id, attempt, store

    def _write(self, session: Session, batch: Batch) -> Job:
        job = leased_job(session, self.job_id, self.attempt)
        upsert_metrics(session, job_id=self.job_id, rows=batch.rows)
        if batch.best_weights is not None and batch.best_step is not None:
            save_weights(session, self.store, job_id=self.job_id, kind="best",
                         step=batch.best_step, data=batch.best_weights)
        if batch.step is not None and batch.epoch is not None:
            job.mark_progress(batch.epoch, batch.step)
        job.record_stats(best_val_loss=batch.best_val_loss, best_step=batch.best_step,
                         samples_per_s=batch.samples_per_s, workers=batch.ranks)
        return job

    def _checkpoint(self, session: Session, step: int, state: bytes) -> list[str]:
        """Save the checkpoint and prune the old ones; the keys of their blobs, to delete
        once the transaction has committed."""
        save_checkpoint(session, self.store, job_id=self.job_id, step=step, state=state)
        return prune_checkpoints(session, job_id=self.job_id, keep=CHECKPOINTS_KEPT)

    def _forget(self, pruned: list[str]) -> None:
        for key in pruned:
            self.store.delete(key)

    def save_initial(self, state: bytes) -> bool:
        """Write the state a fresh job starts from as checkpoint step 0; True when a cancel
        of the job has been requested."""
        with session_scope(self.factory) as session:
            job = leased_job(session, self.job_id, self.attempt)
            save_checkpoint(session, self.store, job_id=self.job_id, step=0, state=state)
            return job.cancel_requested

    def flush(self, batch: Batch, state: tuple[int, bytes] | None) -> bool:
        """Write ``batch`` and the checkpoint ``state`` (step, bytes), if any; True when a
        cancel of the job has been requested."""
        pruned: list[str] = []
        with session_scope(self.factory) as session:
            job = self._write(session, batch)
            if state is not None:
                pruned = self._checkpoint(session, *state)
            cancel = job.cancel_requested
        self._forget(pruned)
        return cancel

    def stop(self, trainer: Trainer, batch: Batch, ending: Ending) -> None:
        """Write ``batch`` and a checkpoint of the trainer's state, then ``ending``, in one
        transaction. The history ends at that checkpoint: an attempt that died after
        recording later steps leaves none behind."""
        with session_scope(self.factory) as session:
            job = self._write(session, batch)
            drop_metrics_after(session, job_id=self.job_id, step=trainer.step)
            pruned = self._checkpoint(session, trainer.step, state_bytes(trainer))
            ending(session, job)
        self._forget(pruned)

    def fail(self, error_type: str, message: str) -> None:
        """Fail the job without another write (a fault of the service's own)."""
        with session_scope(self.factory) as session:
            leased_job(session, self.job_id, self.attempt).mark_failed(error_type, message)

    def finish(self, trainer: Trainer, batch: Batch, last: StepEvent | None,
               seconds: float) -> None:
        """Write the last batch and the final weights, which stand for the checkpoint of the
        last step (``save_final``), and mark the job succeeded."""
        model = trainer.model().to_npz()
        with session_scope(self.factory) as session:
            job = self._write(session, batch)
            save_final(session, self.store, job_id=self.job_id, step=trainer.step, data=model)
            job.mark_succeeded(
                final_train_loss=last.epoch_train_loss if last else None,
                final_val_loss=last.val_loss if last else None,
                final_val_accuracy=last.val_accuracy if last else None,
                best_val_loss=job.best_val_loss, best_step=job.best_step,
                samples_per_s=job.samples_per_s, seconds=seconds)


RecordsFactory = Callable[[SessionFactory, str, int, BlobStore], Records]
"""Makes the ``Records`` of an attempt: ``Records`` itself, or a test's subclass."""
