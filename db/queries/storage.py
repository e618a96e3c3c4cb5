"""What a tenant holds in the blob store, in bytes: the figure its quota bounds."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Checkpoint, Dataset, Job, Upload, Weights


def stored_bytes(session: Session, *, tenant_id: str) -> int:
    """Its datasets, the uploads it is still sending (at their full length, which they are
    about to hold), and the checkpoints and weights of its jobs."""
    parts = [
        select(func.coalesce(func.sum(Dataset.size_bytes), 0))
        .where(Dataset.tenant_id == tenant_id),
        select(func.coalesce(func.sum(Upload.length), 0))
        .where(Upload.tenant_id == tenant_id, Upload.status == "receiving"),
        select(func.coalesce(func.sum(Checkpoint.size_bytes), 0))
        .join(Job, Job.id == Checkpoint.job_id).where(Job.tenant_id == tenant_id),
        select(func.coalesce(func.sum(Weights.size_bytes), 0))
        .join(Job, Job.id == Weights.job_id).where(Job.tenant_id == tenant_id),
    ]
    return sum(int(session.execute(part).scalar_one()) for part in parts)
