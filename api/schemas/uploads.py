"""Resumable upload bodies: where an upload stands (``GET /v1/uploads/{id}``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.datasets import DatasetPublic
from db.models import UploadStatus


class UploadPublic(BaseModel):
    id: str
    length: int = Field(description="The file's size in bytes (Upload-Length).")
    offset: int = Field(description="Bytes stored so far: send the rest from here.")
    status: UploadStatus = Field(
        description="receiving (send the rest), ingesting (every byte came; being read into "
        "a dataset), ready (see dataset) or failed (see error).")
    dataset: DatasetPublic | None = Field(
        description="The dataset made of it, once ready (null if since deleted).")
    error: str | None = Field(description="Why it failed: what is wrong with the file, and "
                              "where.")
