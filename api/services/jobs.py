"""Submitting jobs: the checks that need the dataset and the settings, then the queued row.

The spec's own values were checked when the request was parsed (``JobCreate``); what is
checked here depends on the dataset (output width, rows) and on the service's limits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.queue import EnqueueError
from api.schemas.jobs import JobCreate
from api.services.errors import Conflict, InvalidInput, QueueFull, Unavailable
from core.data import InvalidDataError, output_width
from core.network import Network
from core.npz import from_npz
from core.splits import n_validation, steps_per_epoch
from db.blobs import BlobStore
from db.models import Dataset, Job
from db.queries.checkpoints import read_weights
from db.queries.datasets import get_dataset
from db.queries.jobs import (
    IdempotencyConflict,
    count_queued,
    create_job,
    delete_ended_job,
    get_job,
    jobs_starting_from,
)
from db.queries.metrics import rewind_to_checkpoint
from db.settings import Settings

log = logging.getLogger(__name__)


def _limit(field: tuple[str, ...], message: str) -> InvalidInput:
    return InvalidInput(("body", *field), f"{'.'.join(field)}: {message}", kind="limit_exceeded")


def job_output_width(*, spec: JobCreate, dataset: Dataset) -> int:
    """Units of the output layer for this dataset, as the core's target encoding sets them."""
    if dataset.task == "regression" and spec.loss == "cross_entropy":
        raise InvalidInput(("body", "loss"), "loss: cross_entropy needs class labels, and "
                           f"dataset {dataset.id} holds regression targets; use mse")
    try:
        return output_width(dataset.task, dataset.classes, dataset.n_targets,
                            spec.model.output, spec.loss)
    except InvalidDataError as error:
        raise InvalidInput(("body", "loss"), f"loss: {error}") from error


def check_limits(*, spec: JobCreate, dataset: Dataset, network: Network,
                 settings: Settings) -> None:
    """The job fits the dataset and the limits of the settings; each misfit is an
    ``InvalidInput`` naming the field to change."""
    n_train = dataset.n_rows - n_validation(dataset.n_rows, spec.validation_fraction)
    if n_train == 0:
        raise InvalidInput(("body", "validation_fraction"), "validation_fraction: holding out "
                           f"{spec.validation_fraction} of {dataset.n_rows} rows leaves none "
                           "to train on")
    if spec.epochs > settings.max_epochs:
        raise _limit(("epochs",), f"{spec.epochs} is above the limit "
                     f"max_epochs={settings.max_epochs}")
    if network.n_params > settings.max_params:
        raise _limit(("model", "hidden"), f"the network {'-'.join(map(str, network.sizes))} has "
                     f"{network.n_params} parameters, above the limit "
                     f"max_params={settings.max_params}")
    if n_train * spec.epochs > settings.max_compute:
        raise _limit(("epochs",), f"{spec.epochs} epochs of {n_train} training rows are "
                     f"{n_train * spec.epochs} row-epochs, above the limit "
                     f"max_compute={settings.max_compute}")
    if spec.shards > n_train:
        raise InvalidInput(("body", "shards"), f"shards: {spec.shards} shards for {n_train} "
                           "training rows (after the validation hold-out): every shard needs "
                           "at least one row")


def check_init(*, session: Session, store: BlobStore, tenant_id: str, job_id: str,
               network: Network) -> None:
    """The job to start from exists for this tenant and its final weights fit ``network``."""
    source = get_job(session, tenant_id=tenant_id, job_id=job_id)
    if source is None:
        raise InvalidInput(("body", "init"), f"init: you have no job {job_id}")
    weights = read_weights(session, store, job_id=job_id, kind="final")
    if weights is None:
        raise InvalidInput(("body", "init"),
                           f"init: job {job_id} has no final weights (it is {source.status})")
    try:
        network.from_arrays(from_npz(weights[1]))
    except ValueError as error:
        raise InvalidInput(("body", "init"), f"init: {error}") from error


def check_dtype(*, spec: JobCreate, dataset: Dataset) -> None:
    """A float32 job refuses data that float32 cannot hold: it would train on infinities."""
    if spec.dtype == "float32" and dataset.beyond_float32:
        name, row = dataset.beyond_float32
        raise InvalidInput(("body", "dtype"), f"dtype: {name} of dataset {dataset.id} holds "
                           f"values beyond float32's range (first at row {row}): use float64, "
                           "or scale the data")


def submit_job(*, session: Session, store: BlobStore, tenant_id: str, spec: JobCreate,
               settings: Settings, idempotency_key: str | None = None) -> tuple[Job, bool]:
    """The queued job for ``spec``, and True; or, when ``idempotency_key`` was used before
    with the same spec, that first job and False.

    Raises ``InvalidInput`` (a field, a limit, or a key used before with another request) or
    ``QueueFull``. Flushes only: the caller commits, then enqueues.
    """
    # Shared until the commit: the dataset cannot be deleted under a job being queued on it.
    dataset = get_dataset(session, tenant_id=tenant_id, dataset_id=spec.dataset, lock="share")
    if dataset is None:
        raise InvalidInput(("body", "dataset"), f"dataset: you have no dataset {spec.dataset}",
                           kind="not_found")
    network = Network.from_spec(spec, dataset.n_features,
                                job_output_width(spec=spec, dataset=dataset))
    check_limits(spec=spec, dataset=dataset, network=network, settings=settings)
    check_dtype(spec=spec, dataset=dataset)
    if spec.init is not None:
        check_init(session=session, store=store, tenant_id=tenant_id, job_id=spec.init,
                   network=network)

    stored = spec.normalized()
    # Hashed normalised: a retry that spells a default out is still the same request.
    request_hash = hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()
    total_steps = spec.epochs * steps_per_epoch(
        dataset.n_rows, spec.validation_fraction, spec.batch_size)
    try:
        job, created = create_job(
            session, tenant_id=tenant_id, dataset_id=dataset.id, name=spec.name,
            tags=dict(spec.tags), spec=stored, total_steps=total_steps,
            idempotency_key=idempotency_key, request_hash=request_hash)
    except IdempotencyConflict as error:
        raise InvalidInput(("header", "Idempotency-Key"), str(error),
                           kind="idempotency_conflict") from error
    except IntegrityError as error:
        # SQLite takes no row lock: the dataset was deleted since it was read.
        raise InvalidInput(("body", "dataset"), f"dataset: you have no dataset {spec.dataset}",
                           kind="not_found") from error
    # Counted after the insert, so that replaying a request whose job is queued is never
    # refused; the caller's rollback undoes the insert when the queue is full.
    if created and count_queued(session, tenant_id=tenant_id) > settings.max_queued_jobs_per_tenant:
        raise QueueFull(f"you have {settings.max_queued_jobs_per_tenant} queued jobs, the "
                        "most allowed (max_queued_jobs_per_tenant); retry when some have started")
    return job, created


@dataclass(frozen=True)
class Submission:
    """The job a submission stands for, and whether this request created it (False: the
    replay of an idempotency key)."""

    job: Job
    created: bool


def submit_and_enqueue(*, session: Session, store: BlobStore, tenant_id: str,
                       spec: JobCreate, settings: Settings, enqueue: Callable[[str], None],
                       idempotency_key: str | None = None) -> Submission:
    """``submit_job``, committed, then sent to the workers with ``enqueue``. Raises as
    ``submit_job`` does, and ``Unavailable`` when the broker does not take the job, which is
    then deleted again: a job must not wait forever for a message that was never sent, and
    the client's retry submits it afresh."""
    job, created = submit_job(session=session, store=store, tenant_id=tenant_id, spec=spec,
                              settings=settings, idempotency_key=idempotency_key)
    if not created:
        return Submission(job, created=False)
    # Committed first: a worker may pick the job up before the request returns.
    session.commit()
    try:
        enqueue(job.id)
    except EnqueueError as error:
        log.error("could not enqueue job %s: %s", job.id, error)
        session.delete(job)
        session.commit()
        raise Unavailable("the job queue is unreachable; nothing was stored, "
                          "retry later") from error
    return Submission(job, created=True)


def cancel_job(*, session: Session, job: Job) -> None:
    """Cancel a queued job at once, at its latest checkpoint (one that ran before was handed
    back there); ask a running one to stop at its next step; cancelling a cancelled job again
    changes nothing. Raises ``Conflict`` for a job that has ended."""
    if job.status in ("succeeded", "failed"):
        raise Conflict(f"job {job.id} has already {job.status}; there is nothing to cancel")
    if job.status == "queued":
        rewind_to_checkpoint(session, job)
    job.request_cancel()


def delete_job(*, session: Session, job: Job) -> None:
    """Delete an ended job with its history, checkpoints and weights; the caller deletes its
    blobs once this is committed. Raises ``Conflict`` for a queued or running job, and for
    one whose weights a queued or running job is to start from."""
    if not job.is_finished:
        raise Conflict(f"job {job.id} is {job.status}: cancel it first (POST "
                       f"/v1/jobs/{job.id}/cancel, or shardtrain cancel {job.id}), then "
                       "delete it once it has stopped")
    users = jobs_starting_from(session, tenant_id=job.tenant_id, job_id=job.id)
    if users:
        raise Conflict(f"job {users[0].id} ({users[0].status}) starts from the weights of "
                       f"job {job.id}; delete it once that job has ended")
    if not delete_ended_job(session, tenant_id=job.tenant_id, job_id=job.id):
        raise Conflict(f"job {job.id} changed meanwhile; ask for it again")
