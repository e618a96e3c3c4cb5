"""Builders of stored datasets and jobs, for worker and end-to-end tests."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, object_session

from core.data import infer_task
from core.npz import to_npz
from core.splits import steps_per_epoch
from db.models import Dataset, Job
from db.queries.datasets import store_dataset
from db.queries.jobs import create_job
from db.queries.leases import claim_job
from db.queries.tenants import create_tenant


def add_dataset(session: Session, X: np.ndarray, y: np.ndarray, *,
                tenant: str = "acme") -> Dataset:
    content = to_npz({"X": X, "y": y})
    task = infer_task(y)
    dataset, _ = store_dataset(
        session, tenant_id=create_tenant(session, name=tenant).id, name="data.npz",
        content=content, sha256=hashlib.sha256(content).hexdigest(), n_rows=X.shape[0],
        n_features=X.shape[1], task=task,
        classes=np.unique(y).tolist() if task == "classification" else None)
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
