"""Deleting a job on both backends: only an ended one, and its results cascade."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.blobs import BlobStore
from db.models import Checkpoint, Job, Metric, Tenant, Weights
from db.queries.checkpoints import save_checkpoint, save_final
from db.queries.jobs import delete_ended_job, jobs_starting_from
from db.queries.metrics import upsert_metrics
from tests.utils.jobs import claimed


def test_only_an_ended_job_is_deleted_and_its_results_go_with_it(
        session: Session, store: BlobStore, tenant: Tenant, add_job: Callable[..., Job]
        ) -> None:
    job = add_job()
    follower = add_job(spec={"epochs": 1, "init": job.id})
    assert jobs_starting_from(session, tenant_id=tenant.id, job_id=job.id) == [follower]
    assert not delete_ended_job(session, tenant_id=tenant.id, job_id=job.id)  # queued
    claimed(job)
    save_checkpoint(session, store, job_id=job.id, step=0, state=b"state")
    upsert_metrics(session, job_id=job.id, rows=[(1, 0, 0.5, None, None)])
    save_final(session, store, job_id=job.id, step=1, data=b"weights")
    job.mark_failed("Diverged", "the loss is NaN")
    session.commit()
    assert not delete_ended_job(session, tenant_id="another", job_id=job.id)
    assert delete_ended_job(session, tenant_id=tenant.id, job_id=job.id)
    session.commit()
    for model in (Metric, Checkpoint, Weights):
        count = select(func.count()).select_from(model).where(model.job_id == job.id)
        assert session.execute(count).scalar_one() == 0
    assert session.get(Job, follower.id) is not None
