"""Datasets, deduplicated per tenant by the SHA-256 of their content."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import Dataset, Job, Layout, Task
from db.queries.dml import insert_for
from db.queries.pagination import SortKey, cursor_datetime, paginate

_NEWEST_FIRST = SortKey("-created", Dataset.created_at, descending=True, parse=cursor_datetime)


@dataclass(frozen=True)
class DatasetFacts:
    """What a dataset's row says of the blobs that hold it (``db.models.Dataset``)."""

    sha256: str
    size_bytes: int
    n_rows: int
    n_features: int
    task: Task
    classes: list[Any] | None
    n_targets: int = 1
    target_min: float | None = None
    target_max: float | None = None
    beyond_float32: list[Any] | None = None
    layout: Layout = "rows"


def store_dataset(session: Session, *, dataset_id: str, tenant_id: str, name: str,
                  facts: DatasetFacts) -> tuple[Dataset, bool]:
    """The row of the dataset whose blobs are stored under ``dataset_id``, and True; or,
    when the tenant already has a dataset of that content (also when two uploads race), that
    one and False: the caller then deletes its own blobs."""
    existing = _by_sha256(session, tenant_id=tenant_id, sha256=facts.sha256)
    if existing is not None:
        return existing, False
    insert = insert_for(session, Dataset).values(
        id=dataset_id, tenant_id=tenant_id, name=name, **asdict(facts))
    statement = insert.on_conflict_do_nothing(
        index_elements=[Dataset.tenant_id, Dataset.sha256]
    ).returning(Dataset)
    created = session.execute(statement).scalar_one_or_none()
    if created is not None:
        return created, True
    # A concurrent upload of the same content committed first; the conflict waited for it.
    winner = _by_sha256(session, tenant_id=tenant_id, sha256=facts.sha256)
    assert winner is not None
    return winner, False


def dataset_with_content(session: Session, *, tenant_id: str, sha256: str) -> Dataset | None:
    """The tenant's dataset of this content digest, if it has one."""
    return _by_sha256(session, tenant_id=tenant_id, sha256=sha256)


def _by_sha256(session: Session, *, tenant_id: str, sha256: str) -> Dataset | None:
    statement = select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
    return session.execute(statement).scalar_one_or_none()


def get_dataset(session: Session, *, tenant_id: str, dataset_id: str,
                lock: Literal["share", "update"] | None = None) -> Dataset | None:
    """The dataset, or None if it does not exist or belongs to another tenant.

    ``lock`` (PostgreSQL; SQLite serialises writers anyway) holds the row until the commit:
    ``share`` for a job about to use it, ``update`` for its deletion. So a deletion waits for
    the job and then sees it, and a job that waited for a deletion finds no dataset.
    """
    statement = select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
    if lock is not None:
        statement = statement.with_for_update(read=lock == "share", key_share=lock == "share")
    return session.execute(statement).scalar_one_or_none()


def active_job_using(session: Session, *, dataset_id: str) -> Job | None:
    """A queued or running job on the dataset, if there is one."""
    statement = select(Job).where(Job.dataset_id == dataset_id,
                                  Job.status.in_(("queued", "running"))).limit(1)
    return session.execute(statement).scalar_one_or_none()


def delete_dataset_row(session: Session, *, dataset_id: str) -> None:
    """The row only: ended jobs keep their history (their dataset_id becomes NULL by the
    foreign key); the blobs are the caller's to delete once this is committed."""
    session.execute(delete(Dataset).where(Dataset.id == dataset_id)
                    .execution_options(synchronize_session=False))


def list_datasets(
    session: Session, *, tenant_id: str, limit: int = 50, cursor: str | None = None
) -> tuple[list[Dataset], str | None]:
    """One page of the tenant's datasets, newest first, and the cursor of the next page."""
    statement = select(Dataset).where(Dataset.tenant_id == tenant_id)
    return paginate(
        session, statement, key=_NEWEST_FIRST, id_column=Dataset.id, limit=limit, cursor=cursor
    )
