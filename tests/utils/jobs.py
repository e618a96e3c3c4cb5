"""Builders of stored datasets and jobs, for worker and end-to-end tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, object_session

from api.services.datasets import store_data
from core.splits import steps_per_epoch
from db.blobs import BlobStore
from db.models import Dataset, Job
from db.queries.jobs import create_job
from db.queries.leases import claim_job
from db.queries.tenants import create_tenant


def add_dataset(session: Session, store: BlobStore, X: np.ndarray, y: np.ndarray, *,
                tenant: str = "acme") -> Dataset:
    """``(X, y)`` stored as an upload of them is, in ``store``."""
    dataset, _ = store_data(session=session, store=store,
                            tenant_id=create_tenant(session, name=tenant).id, name="data.npz",
                            X=X, y=y)
    return dataset


def add_job(session: Session, dataset: Dataset, spec: dict[str, Any]) -> Job:
    full = {"name": "test", "dataset": dataset.id, **spec}
    job, _ = create_job(
        session, tenant_id=dataset.tenant_id, dataset_id=dataset.id, name=full["name"],
        tags={}, spec=full,
        total_steps=spec["epochs"] * steps_per_epoch(
            dataset.n_rows, spec.get("validation_fraction", 0.2), spec["batch_size"]))
    return job


def claimed(job: Job, *, now: datetime | None = None, held: int | None = None) -> Job:
    """``job`` (in a session) once a worker has claimed it (``claim_job``), read again."""
    session = object_session(job)
    assert session is not None
    session.flush()
    attempt = claim_job(session, job_id=job.id, stall_timeout_s=3600, held=held, now=now)
    assert attempt is not None, f"job {job.id} could not be claimed"
    session.refresh(job)
    return job
