"""What a tenant holds in the blob store: the figure its storage quota bounds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from db.base import utc_now
from db.models import Checkpoint, Dataset, Job, Tenant, Upload, Weights
from db.queries.storage import stored_bytes
from db.queries.tenants import create_tenant


def test_datasets_receiving_uploads_checkpoints_and_weights_count(
    session: Session, tenant: Tenant, dataset: Dataset, add_job: Callable[..., Job],
    add_dataset: Callable[..., Dataset]
) -> None:
    assert stored_bytes(session, tenant_id=tenant.id) == len(b"npz bytes of acme")
    job = add_job()
    later = utc_now() + timedelta(days=1)
    session.add_all([
        Checkpoint(job_id=job.id, step=0, size_bytes=100),
        Checkpoint(job_id=job.id, step=5, size_bytes=100),
        Weights(job_id=job.id, kind="final", step=5, size_bytes=40),
        Upload(tenant_id=tenant.id, length=5000, status="receiving", expires_at=later),
        # Ingested or failed: its bytes are a dataset's now, or gone.
        Upload(tenant_id=tenant.id, length=7000, status="ready", expires_at=later),
        Upload(tenant_id=tenant.id, length=9000, status="failed", expires_at=later),
    ])
    other = create_tenant(session, name="globex")
    add_dataset(other, content=b"x" * 1000)
    session.flush()
    assert stored_bytes(session, tenant_id=tenant.id) == 17 + 200 + 40 + 5000
    assert stored_bytes(session, tenant_id=other.id) == 1000
