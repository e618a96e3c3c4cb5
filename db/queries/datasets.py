"""Datasets, deduplicated per tenant by the SHA-256 of their content."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Dataset, Task
from db.queries.dml import insert_for
from db.queries.pagination import SortKey, cursor_datetime, paginate

_NEWEST_FIRST = SortKey("-created", Dataset.created_at, descending=True, parse=cursor_datetime)


def store_dataset(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    content: bytes,
    sha256: str,
    n_rows: int,
    n_features: int,
    task: Task,
    classes: list[Any] | None,
    n_targets: int = 1,
) -> tuple[Dataset, bool]:
    """The tenant's dataset with this content, and whether this call created it.

    ``sha256`` must be the hex digest of ``content``; ``n_targets`` is the number of columns of
    y (1 for class labels or a single regression target). An upload of content the tenant already
    has returns the stored dataset (with its original name), also when two uploads race.
    """
    existing = _by_sha256(session, tenant_id=tenant_id, sha256=sha256)
    if existing is not None:
        return existing, False
    insert = insert_for(session, Dataset).values(
        tenant_id=tenant_id,
        name=name,
        sha256=sha256,
        content=content,
        size_bytes=len(content),
        n_rows=n_rows,
        n_features=n_features,
        n_targets=n_targets,
        task=task,
        classes=classes,
    )
    statement = insert.on_conflict_do_nothing(
        index_elements=[Dataset.tenant_id, Dataset.sha256]
    ).returning(Dataset)
    created = session.execute(statement).scalar_one_or_none()
    if created is not None:
        return created, True
    # A concurrent upload of the same content committed first; the conflict waited for it.
    winner = _by_sha256(session, tenant_id=tenant_id, sha256=sha256)
    assert winner is not None
    return winner, False


def _by_sha256(session: Session, *, tenant_id: str, sha256: str) -> Dataset | None:
    statement = select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
    return session.execute(statement).scalar_one_or_none()


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str) -> Dataset | None:
    """The dataset, or None if it does not exist or belongs to another tenant."""
    statement = select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
    return session.execute(statement).scalar_one_or_none()


def list_datasets(
    session: Session, *, tenant_id: str, limit: int = 50, cursor: str | None = None
) -> tuple[list[Dataset], str | None]:
    """One page of the tenant's datasets, newest first, and the cursor of the next page."""
    statement = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return paginate(
        session, statement, key=_NEWEST_FIRST, id_column=Dataset.id, limit=limit, cursor=cursor
    )
