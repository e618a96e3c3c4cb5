"""What a worker reads before training: the numeric spec, the dataset and any initial weights."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache, cached
from sqlalchemy.orm import Session

from core.data import InvalidDataError, output_width
from core.job import JobData
from core.network import Network
from core.npz import from_npz
from core.rows import ArrayRows
from core.spec import TrainSpec
from db.models import Dataset, Job
from db.queries.checkpoints import get_weights
from db.queries.jobs import get_job


@dataclass(frozen=True)
class JobSpec:
    """A job's stored spec, read once: the core's part, and the service fields a worker
    acts on."""

    train: TrainSpec
    max_ranks: int | None  # the spec's max_workers; None: "auto"
    init: str | None  # the job whose final weights start this one
    submitted: dict[str, Any]  # the whole spec, stored with the weights

    @classmethod
    def read(cls, stored: dict[str, Any]) -> JobSpec:
        """Raises SpecError for a numeric part that no longer passes the core's checks."""
        max_workers = stored.get("max_workers", "auto")
        return cls(train=TrainSpec.from_job_spec(stored),
                   max_ranks=max_workers if isinstance(max_workers, int) else None,
                   init=stored.get("init"), submitted=dict(stored))


@dataclass(frozen=True)
class TrainingInput:
    """A job's data, as its rows will be read, and its initial weights."""

    spec: JobSpec
    job: JobData
    init: dict[str, np.ndarray] | None


# Decoded datasets kept by this worker process, by content hash: the next job on the same data
# (a sweep, a retry, the other ranks' next job) starts without reading, decoding and checking
# it again (checking alone reads every value: 10 ms for 188 MB here).
CACHED_DATASETS = 2
# The leader's gathering thread and its training thread may load at once.
_cache_lock = threading.Lock()


@cached(LRUCache(maxsize=CACHED_DATASETS), key=lambda dataset: dataset.sha256, lock=_cache_lock)
def dataset_rows(dataset: Dataset) -> ArrayRows:
    """The rows of ``dataset``, checked and in the order jobs split them, shared read-only
    between the jobs of this process. Raises InvalidDataError (and keeps nothing)."""
    arrays = from_npz(dataset.content)
    rows = ArrayRows(arrays["X"], arrays["y"])
    rows.X.flags.writeable = rows.y.flags.writeable = False
    return rows


def planned_network(session: Session, job: Job) -> tuple[JobSpec, Network]:
    """The job's spec and network, from its dataset's description alone: a leader sizes its
    ranks with it before it loads any rows. Raises as ``load_input`` does."""
    spec = JobSpec.read(job.spec)
    dataset = _dataset(session, job)
    n_out = output_width(dataset.task, dataset.classes, dataset.n_targets,
                         spec.train.model.output, spec.train.loss)
    return spec, Network.from_spec(spec.train, dataset.n_features, n_out)


def _dataset(session: Session, job: Job) -> Dataset:
    dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        raise InvalidDataError(f"dataset {job.dataset_id} no longer exists")
    return dataset


def load_input(session: Session, job: Job, spec: JobSpec) -> TrainingInput:
    """The data and initial weights of ``job`` (whose spec is ``spec``). Raises
    InvalidDataError (or SpecError) when the job cannot train as stored."""
    rows = dataset_rows(_dataset(session, job))
    data = JobData.build(spec.train, rows.shape, rows)
    init = None
    if spec.init:
        source = get_job(session, tenant_id=job.tenant_id, job_id=spec.init)
        weights = get_weights(session, job_id=spec.init, kind="final") if source else None
        if weights is None:
            raise InvalidDataError(f"init job {spec.init} has no final weights")
        init = from_npz(weights.data)
    return TrainingInput(spec=spec, job=data, init=init)
