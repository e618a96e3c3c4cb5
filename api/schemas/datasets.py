"""Dataset bodies: what an upload returns and what the listing pages hold."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from db.models import Task


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    n_rows: int
    n_features: int
    n_targets: int = Field(
        description="Columns of y: 1 for class labels or a single target, k for k targets."
    )
    task: Task
    classes: list[int] | list[str] | None = Field(
        description="The sorted class labels of a classification dataset; null for regression."
    )
    sha256: str = Field(
        description="Digest of the arrays' dtypes, shapes and values: equal data hashes equal, "
        "whatever the upload's format."
    )
    size_bytes: int = Field(description="Size of the stored .npz.")
    created_at: datetime


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None
