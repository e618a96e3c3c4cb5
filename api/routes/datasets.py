"""``/v1/datasets``: upload training data, list, inspect and delete it."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, BinaryIO

from anyio import from_thread, to_thread
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from starlette.datastructures import UploadFile

from api.admission import DatabaseGate
from api.deps import CurrentTenant, GateDep, SessionDep, SettingsDep, StoreDep, TenantBriefly
from api.errors import http_error
from api.responses import AUTHENTICATED, UNPARSABLE_BODY
from api.schemas.datasets import DatasetPublic, DatasetsPublic
from api.services.dataset_files import MEDIA_TYPES, UploadFormat, format_of_filename
from api.services.datasets import delete_dataset, record_dataset
from api.services.errors import InvalidInput, ServiceError, TooLarge
from api.services.ingest import ingest
from api.services.ingest.json_body import JSON_SHAPE
from api.services.quota import check_quota
from core.data import InvalidDataError
from db.blobs import BlobStore
from db.blobs.datasets import dataset_prefix
from db.models import Dataset
from db.queries.datasets import (
    DatasetFacts,
    dataset_with_content,
    get_dataset,
    list_datasets,
)
from db.settings import Settings

log = logging.getLogger(__name__)
log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=AUTHENTICATED)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
# The body is read by hand (it is dispatched on Content-Type), so OpenAPI is told about it here.
_UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": _BINARY,
    "application/x-npz": _BINARY,
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": _BINARY,
    "application/json": {"schema": {"type": "object", "description": JSON_SHAPE,
                                    "required": ["X", "y"]}},
    # One file and nothing else (the form is parsed with max_fields=0).
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "additionalProperties": False, "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "a .npz, .csv, .parquet or .json file"}}}},
}}}


@asynccontextmanager
async def _read_upload(request: Request
                       ) -> AsyncIterator[tuple[UploadFormat, BinaryIO, str | None]]:
    """The format, the bytes (a seekable file) and the file name (multipart only) of the
    request's upload."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=0) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput(("body", "file"), "a multipart upload holds one file, in the "
                                   "field 'file'", kind="missing")
            filename = upload.filename or ""
            yield format_of_filename(filename), upload.file, filename  # type: ignore[misc]
        return
    if media_type not in MEDIA_TYPES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            detail=f"cannot read Content-Type {media_type or 'none'!r}; send "
                            f"one of {', '.join(MEDIA_TYPES)} or multipart/form-data")
    yield MEDIA_TYPES[media_type], io.BytesIO(await request.body()), None


def _ingest_for(source: BinaryIO, *, fmt: UploadFormat, target: str | None, name: str,
                tenant_id: str, gate: DatabaseGate, store: BlobStore,
                settings: Settings) -> tuple[Dataset, bool]:
    """``ingest`` in a worker thread, its two queries each in a slot of the gate: none is held
    while the upload is read."""
    def known(sha256: str) -> Dataset | None:
        return from_thread.run(gate.run, partial(dataset_with_content, tenant_id=tenant_id,
                                                 sha256=sha256))

    def record(dataset_id: str, facts: DatasetFacts) -> tuple[Dataset, bool]:
        return from_thread.run(gate.run, partial(
            record_dataset, tenant_id=tenant_id, name=name, dataset_id=dataset_id,
            facts=facts, settings=settings))

    return ingest(source, fmt=fmt, target=target, store=store, settings=settings,
                  known=known, record=record)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={**UNPARSABLE_BODY,
               200: {"model": DatasetPublic, "description": "You had stored this data already"},
               413: {"description": "The body is larger than max_body_bytes or "
                     "max_dataset_bytes, or past your storage quota (tenant_quota_bytes)"},
               415: {"description": "A Content-Type the API cannot read"}},
    openapi_extra=_UPLOAD_BODY,
)
async def upload_dataset(
    request: Request,
    response: Response,
    gate: GateDep,
    store: StoreDep,
    tenant: TenantBriefly,
    settings: SettingsDep,
    name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    target: Annotated[str | None, Query(
        min_length=1, max_length=200,
        description="CSV and Parquet only: the column of labels or targets",
    )] = None,
) -> Dataset:
    """Upload an .npz (arrays X and y), a CSV with a header row, a Parquet file, or JSON
    {"X", "y"}.

    Integer and string labels make a classification dataset, floats a regression one. The
    same data uploaded again (in any format) returns the stored dataset with 200.
    """
    try:
        # Read with no database connection held: a slow client must not take one for minutes.
        async with _read_upload(request) as (fmt, source, filename):
            size = source.seek(0, io.SEEK_END)
            source.seek(0)
            if size > settings.max_dataset_bytes:
                raise TooLarge(f"the upload holds {size} bytes, more than the limit "
                               f"max_dataset_bytes={settings.max_dataset_bytes}")
            await gate.run(lambda session: check_quota(session, tenant.id, size, settings))
            # Parsing and hashing are CPU-bound and the store blocking: off the event loop.
            dataset, created = await to_thread.run_sync(partial(
                _ingest_for, source, fmt=fmt, target=target,
                name=name or (filename or f"upload.{fmt}")[:200], tenant_id=tenant.id,
                gate=gate, store=store, settings=settings))
    except InvalidDataError as error:
        raise http_error(InvalidInput(("body",), str(error), kind="invalid_data")) from error
    except ServiceError as error:
        raise http_error(error) from error
    if not created:
        response.status_code = status.HTTP_200_OK
    return dataset


@router.get("", response_model=DatasetsPublic)
def list_tenant_datasets(
    session: SessionDep,
    tenant: CurrentTenant,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> DatasetsPublic:
    """Your datasets, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    datasets, next_cursor = list_datasets(session, tenant_id=tenant.id, limit=limit,
                                          cursor=cursor)
    return DatasetsPublic(items=[DatasetPublic.model_validate(d) for d in datasets],
                          next_cursor=next_cursor)


@router.get("/{dataset_id}", response_model=DatasetPublic,
            responses={404: {"description": "You have no such dataset"}})
def read_dataset(dataset_id: str, session: SessionDep, tenant: CurrentTenant) -> Dataset:
    dataset = get_dataset(session, tenant_id=tenant.id, dataset_id=dataset_id)
    if dataset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no dataset {dataset_id}")
    return dataset


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"description": "You have no such dataset"},
                          409: {"description": "A queued or running job uses it"}})
async def delete_tenant_dataset(dataset_id: str, gate: GateDep, store: StoreDep,
                                tenant: TenantBriefly) -> Response:
    """Delete a dataset and its stored rows. Ended jobs on it keep their history and weights
    (their ``dataset`` becomes null); while a queued or running job uses it, 409."""
    try:
        await gate.run(partial(delete_dataset, tenant_id=tenant.id, dataset_id=dataset_id))
    except ServiceError as error:
        raise http_error(error) from error
    # Only once the row is gone: a failure here leaves blobs that no row names (harmless),
    # never a row without its blobs.
    prefix = dataset_prefix(dataset_id) + "/"
    try:
        await to_thread.run_sync(store.delete_prefix, prefix)
    except Exception:
        log.exception("dataset %s deleted, but not its blobs under %s", dataset_id, prefix)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
