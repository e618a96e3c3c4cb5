"""What a worker reads before training: the numeric spec, the dataset and any initial weights."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache, cached
from sqlalchemy.orm import Session

from core.data import DataShape, InvalidDataError, output_width
from core.job import JobData
from core.network import Network
from core.npz import from_npz
from core.rows import ArrayRows, RowSource
from core.spec import TrainSpec
from db.blobs import BlobStore
from db.blobs.datasets import StoredRows, read_npz
from db.models import Dataset, Job
from db.queries.checkpoints import read_weights
from db.queries.jobs import get_job
from db.settings import Settings
from worker.row_cache import CachedRows, row_cache


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


# Datasets in the "npz" layout kept decoded by this worker process, by id: the next job on
# one (a sweep, a retry, the other ranks' next job) starts without reading and checking it.
CACHED_NPZ_DATASETS = 2
# The leader's gathering thread and its training thread may load at once.
_npz_lock = threading.Lock()


@cached(LRUCache(maxsize=CACHED_NPZ_DATASETS), key=lambda store, dataset: dataset.id,
        lock=_npz_lock)
def npz_rows(store: BlobStore, dataset: Dataset) -> ArrayRows:
    """The rows of a dataset stored before the ``rows`` layout, whole, split by each job's
    seed as they were then. Raises InvalidDataError (and keeps nothing)."""
    arrays = read_npz(store, dataset.id)
    rows = ArrayRows(arrays["X"], arrays["y"], split="seeded")
    rows.X.flags.writeable = rows.y.flags.writeable = False
    return rows


def dataset_rows(store: BlobStore, dataset: Dataset, settings: Settings
                 ) -> tuple[DataShape, RowSource]:
    """What describes ``dataset``, and where its rows are read from."""
    if dataset.layout == "npz":
        rows = npz_rows(store, dataset)
        return rows.shape, rows
    target_range = (None if dataset.target_min is None or dataset.target_max is None
                    else (dataset.target_min, dataset.target_max))
    beyond = tuple(dataset.beyond_float32) if dataset.beyond_float32 else None
    shape = DataShape(
        n_rows=dataset.n_rows, n_features=dataset.n_features, task=dataset.task,
        classes=np.asarray(dataset.classes) if dataset.classes is not None else None,
        n_targets=dataset.n_targets, target_range=target_range, split="contiguous",
        beyond_float32=beyond)  # type: ignore[arg-type]
    cache = row_cache(settings.row_cache_bytes)
    return shape, CachedRows(cache, dataset.id, StoredRows(store, dataset.id))


def planned_network(session: Session, job: Job) -> tuple[JobSpec, Network]:
    """The job's spec and network, from its dataset's description alone: a leader sizes its
    ranks with it before it loads any rows. Raises as ``load_input`` does."""
    spec = JobSpec.read(job.spec)
    dataset = _dataset(session, job)
    n_out = output_width(dataset.task, dataset.classes, dataset.n_targets,
                         spec.train.model.output, spec.train.loss)
    return spec, Network.from_spec(spec.train, dataset.n_features, n_out)


def _dataset(session: Session, job: Job) -> Dataset:
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    if dataset is None:
        raise InvalidDataError(f"dataset {job.dataset_id} no longer exists")
    return dataset


def load_input(session: Session, store: BlobStore, job: Job, spec: JobSpec,
               settings: Settings) -> TrainingInput:
    """The data and initial weights of ``job`` (whose spec is ``spec``); its rows are read
    when the job first needs them. Raises InvalidDataError (or SpecError) when the job
    cannot train as stored."""
    shape, source = dataset_rows(store, _dataset(session, job), settings)
    data = JobData.build(spec.train, shape, source)
    init = None
    if spec.init:
        origin = get_job(session, tenant_id=job.tenant_id, job_id=spec.init)
        weights = (read_weights(session, store, job_id=spec.init, kind="final")
                   if origin else None)
        if weights is None:
            raise InvalidDataError(f"init job {spec.init} has no final weights")
        init = from_npz(weights[1])
    return TrainingInput(spec=spec, job=data, init=init)
