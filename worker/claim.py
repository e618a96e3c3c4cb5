"""How a delivery of a job takes it: the lease and the plan, then the trainer it resumes.

``claim`` takes the lease (``db.queries.leases``) and sizes the network from the dataset's
description; ``prepare`` then loads the rows and builds the trainer at the latest
checkpoint. Each returns the ``Outcome`` of the delivery instead when there is nothing to
train: no such job, a duplicate delivery, a job that has ended or is cancelled, or data that
cannot train (the job then fails).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.checkpoint import restore, state_bytes
from core.data import InvalidDataError
from core.network import Network
from core.spec import SpecError
from core.training import Trainer
from db.blobs import BlobStore
from db.models import Job
from db.queries.checkpoints import latest_checkpoint, read_checkpoint
from db.queries.leases import claim_job
from db.queries.metrics import rewind_to_checkpoint
from db.settings import Settings
from worker.loading import JobSpec, load_input, planned_network
from worker.outcome import Outcome
from worker.records import Progress, leased_job

log = logging.getLogger(__name__)

BAD_DATA = (InvalidDataError, SpecError, ValueError)


@dataclass(frozen=True)
class Claim:
    """A delivery that holds the job's lease, and what it knows before loading any row."""

    attempt: int
    spec: JobSpec
    net: Network


@dataclass(frozen=True)
class Prepared:
    """The claimed job's trainer at its latest checkpoint, its progress so far, and the
    state to save as checkpoint step 0 when it has none (a fresh job)."""

    trainer: Trainer
    progress: Progress
    initial: bytes | None


def internal_error_message(exc: Exception) -> str:
    """The error message of a job failed by a fault of the service's own (``internal``)."""
    return f"{type(exc).__name__}: {exc}"


def _fail(job: Job, exc: Exception, doing: str) -> Outcome:
    """Fail ``job`` for ``exc``, met while ``doing``: bad data, or a fault of the service's
    own, which a retry would meet again (the job fails now, instead of waiting for the
    watchdog to give up on it)."""
    if isinstance(exc, BAD_DATA):
        job.mark_failed("invalid_data", str(exc))
    else:
        log.exception("job %s could not be %s", job.id, doing)
        job.mark_failed("internal", internal_error_message(exc))
    return Outcome.FAILED


def claim(session: Session, job_id: str, settings: Settings, lease: int | None
          ) -> Claim | Outcome:
    """Take the lease of job ``job_id`` (``lease``: the attempt this caller held before a
    database outage), and plan its network; or what became of this delivery."""
    # The claim first (one conditional UPDATE), and the job read once, after it: whatever the
    # claim found, this reads what it left.
    attempt = claim_job(session, job_id=job_id, stall_timeout_s=settings.stall_timeout_s,
                        held=lease)
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        log.warning("job %s does not exist; dropping the message", job_id)
        return Outcome.MISSING
    if attempt is None:
        if job.is_finished:
            return Outcome(job.status)  # a redelivered message for a job that has ended
        if job.cancel_requested and job.status == "queued":
            rewind_to_checkpoint(session, job)  # handed back by the watchdog, its leader dead
            job.mark_cancelled()
            return Outcome.CANCELLED
        # A duplicate delivery while a live leader holds the job (or it is being cancelled
        # by it): dropping the message is safe, the watchdog re-sends a job that stalls.
        log.info("job %s is led by a live attempt; dropping this duplicate delivery", job_id)
        return Outcome.DUPLICATE
    try:
        spec, net = planned_network(session, job)
    except DBAPIError:
        raise  # an outage: the caller retries
    except Exception as exc:
        return _fail(job, exc, "planned")
    return Claim(attempt, spec, net)


def prepare(session: Session, store: BlobStore, job_id: str, claimed: Claim,
            settings: Settings) -> Prepared | Outcome:
    """Build the claimed job's trainer at its latest checkpoint (its rows are read as it
    first needs them); or the job's outcome when its data cannot train. Raises LeaseLost."""
    job = leased_job(session, job_id, claimed.attempt)
    try:
        data = load_input(session, store, job, claimed.spec, settings)
        trainer = Trainer.of_job(data.job, init=data.init, submitted=data.spec.submitted)
    except DBAPIError:
        raise
    except Exception as exc:
        return _fail(job, exc, "loaded")
    progress = Progress(best_val_loss=job.best_val_loss, best_step=job.best_step)
    checkpoint = latest_checkpoint(session, job_id=job_id)
    if checkpoint is None:
        return Prepared(trainer, progress, state_bytes(trainer))
    restore(trainer, read_checkpoint(store, checkpoint))
    return Prepared(trainer, progress, None)
