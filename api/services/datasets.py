"""A tenant's datasets: arrays stored as an upload of them is, an ingested upload recorded
within the quota, and a dataset deleted. Reading uploads is ``api.services.ingest``."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from api.services.errors import Conflict, NotFound
from api.services.ingest import ingest_arrays
from api.services.quota import check_quota
from db.blobs import BlobStore
from db.models import Dataset
from db.queries.datasets import (
    DatasetFacts,
    active_job_using,
    dataset_with_content,
    delete_dataset_row,
    get_dataset,
    store_dataset,
)
from db.settings import Settings


def store_data(*, session: Session, store: BlobStore, tenant_id: str, name: str,
               X: np.ndarray, y: np.ndarray) -> tuple[Dataset, bool]:
    """The tenant's dataset of ``(X, y)`` (with no limits), stored unless the tenant has it
    already, and whether it is new: the rows and digest an upload of them gets."""
    return ingest_arrays(
        X, y, store=store,
        known=lambda sha256: dataset_with_content(session, tenant_id=tenant_id, sha256=sha256),
        record=lambda dataset_id, facts: store_dataset(
            session, dataset_id=dataset_id, tenant_id=tenant_id, name=name, facts=facts))


def record_dataset(session: Session, *, tenant_id: str, name: str, dataset_id: str,
                   facts: DatasetFacts, settings: Settings) -> tuple[Dataset, bool]:
    """The row of a dataset just ingested under ``dataset_id``, if the tenant's quota has
    room for it (TooLarge otherwise); or the tenant's dataset of that content and False."""
    existing = dataset_with_content(session, tenant_id=tenant_id, sha256=facts.sha256)
    if existing is not None:
        return existing, False
    check_quota(session, tenant_id, facts.size_bytes, settings)
    return store_dataset(session, dataset_id=dataset_id, tenant_id=tenant_id, name=name,
                         facts=facts)


def delete_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> None:
    """Deletes the tenant's dataset's row; its blobs (``dataset_prefix``) are the caller's to
    delete once that is committed. Raises NotFound, or Conflict while a queued or running job
    uses it (ended jobs keep their history, without the dataset)."""
    dataset = get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id, lock="update")
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}")
    job = active_job_using(session, dataset_id=dataset_id)
    if job is not None:
        raise Conflict(f"dataset {dataset_id} is in use by job {job.id} ({job.status}): "
                       "cancel it or let it end, then delete the dataset")
    delete_dataset_row(session, dataset_id=dataset_id)
