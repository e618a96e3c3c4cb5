"""``/v1/datasets``: upload training data, list and inspect it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from starlette.datastructures import UploadFile

from api.deps import CurrentTenant, GateDep, SessionDep, SettingsDep, StoreDep, TenantBriefly
from api.errors import http_error
from api.responses import AUTHENTICATED, UNPARSABLE_BODY
from api.schemas.datasets import DatasetPublic, DatasetsPublic
from api.services.dataset_files import (
    JSON_SHAPE,
    MEDIA_TYPES,
    UploadFormat,
    format_of_filename,
)
from api.services.datasets import create_dataset
from api.services.errors import InvalidInput, ServiceError
from core.data import InvalidDataError
from db.models import Dataset
from db.queries.datasets import get_dataset, list_datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=AUTHENTICATED)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
# The body is read by hand (it is dispatched on Content-Type), so OpenAPI is told about it here.
_UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": _BINARY,
    "application/x-npz": _BINARY,
    "text/csv": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object", "description": JSON_SHAPE,
                                    "required": ["X", "y"]}},
    # One file and nothing else (the form is parsed with max_fields=0).
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "additionalProperties": False, "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "a .npz, .csv or .json file"}}}},
}}}


async def _read_upload(request: Request) -> tuple[UploadFormat, bytes, str | None]:
    """The format, bytes and file name (multipart only) of the request's upload."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=0) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput(("body", "file"), "a multipart upload holds one file, in the "
                                   "field 'file'", kind="missing")
            filename = upload.filename or ""
            return format_of_filename(filename), await upload.read(), filename
    if media_type not in MEDIA_TYPES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            detail=f"cannot read Content-Type {media_type or 'none'!r}; send "
                            f"one of {', '.join(MEDIA_TYPES)} or multipart/form-data")
    return MEDIA_TYPES[media_type], await request.body(), None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={**UNPARSABLE_BODY,
               200: {"model": DatasetPublic, "description": "You had stored this data already"},
               413: {"description": "The body is larger than max_body_bytes"},
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
        min_length=1, max_length=200, description="CSV only: the column of labels or targets",
    )] = None,
) -> Dataset:
    """Upload an .npz (arrays X and y), a CSV with a header row, or JSON {"X", "y"}.

    Integer and string labels make a classification dataset, floats a regression one. The
    same data uploaded again (in any format) returns the stored dataset with 200.
    """
    try:
        # Read with no database connection held: a slow client must not take one for minutes.
        fmt, content, filename = await _read_upload(request)
        # Parsing and hashing are CPU-bound and the queries blocking: off the event loop.
        dataset, created = await gate.run(lambda session: create_dataset(
            session=session, store=store, tenant_id=tenant.id,
            name=name or (filename or f"upload.{fmt}")[:200], content=content, fmt=fmt,
            target=target, settings=settings))
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
