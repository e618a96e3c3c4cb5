"""``/v1/uploads``: files of any size, sent in parts and resumable, by tus 1.0 (core, with
the creation, expiration and termination extensions), then read into a dataset.

    OPTIONS /v1/uploads       204  Tus-Version, Tus-Extension, Tus-Max-Size
    POST    /v1/uploads       201  Location: /v1/uploads/{id}   (Upload-Length, Upload-Metadata)
    HEAD    /v1/uploads/{id}  200  Upload-Offset, Upload-Length, Upload-Metadata
    PATCH   /v1/uploads/{id}  204  Upload-Offset                 (Upload-Offset, body)
    DELETE  /v1/uploads/{id}  204
    GET     /v1/uploads/{id}  200  JSON: id, length, offset, status, dataset, error

A client creates an upload with the file's size and, in Upload-Metadata
(``api.services.upload_metadata``), ``filename``, ``name``, ``target`` (the label column of a
CSV or Parquet file) and ``format`` (else told by the filename's extension). It sends the
bytes with PATCHes whose Upload-Offset is the stored offset, and after a dropped connection
asks the offset again (HEAD) and goes on from there. When the last byte is stored, the upload
is read into a dataset in the background (status ``ingesting``); GET says when it is
``ready`` (and which dataset) or ``failed`` (and why). Uploads are the tenant's: another's
id is a 404. One that sees no PATCH for ``upload_expiry_s`` is deleted (Upload-Expires says
when); so is a finished one's status, that long after.

Every tus request but OPTIONS sends ``Tus-Resumable: 1.0.0`` (else 412), and every tus answer
carries it. Refusals: 400 a header missing or malformed; 404 no such upload; 409 Upload-Offset
is not the stored offset (the answer's Upload-Offset is), the upload is complete, or another
PATCH is writing to it; 413 Upload-Length over ``max_dataset_bytes`` or the tenant's quota,
or a body past Upload-Length; 415 a PATCH body that is not application/offset+octet-stream;
422 a metadata value the service cannot use.

A PATCH is exempt from ``max_body_bytes``: it is stored as it arrives
(``api.services.upload_parts``), and its size was bounded when the upload was created.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from api.deps import (
    CurrentTenant,
    GateDep,
    IngestsDep,
    QuotaCheckDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    TenantBriefly,
)
from api.errors import http_error
from api.responses import AUTHENTICATED
from api.schemas.datasets import DatasetPublic
from api.schemas.tus import REFUSALS, UPLOAD_LENGTH, UPLOAD_METADATA, UPLOAD_OFFSET, documented
from api.schemas.uploads import UploadPublic
from api.services.errors import ServiceError
from api.services.upload_metadata import (
    MalformedMetadata,
    dataset_metadata,
    format_metadata,
    parse_metadata,
)
from api.services.upload_parts import GateLedger, PartWriter, PastLength
from db.base import MAX_INTEGER
from db.blobs.keys import MAX_PARTS
from db.models import Upload
from db.queries.datasets import get_dataset
from db.queries.uploads import (
    create_upload,
    get_upload,
    remove_upload,
    take_writer,
    upload_prefix,
)

PREFIX = "/v1/uploads"
TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,expiration,termination"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
MAX_BODY_HEADER = "Shardtrain-Max-Body-Bytes"
"""OPTIONS tells clients ``max_body_bytes``: a file up to it may go in one request."""

router = APIRouter(prefix=PREFIX, tags=["uploads"], responses=AUTHENTICATED)


def body_limit_exempt(scope: Scope) -> bool:
    """The requests the body limit middleware lets through: PATCHes of an upload."""
    return scope["method"] == "PATCH" and str(scope["path"]).startswith(PREFIX + "/")


def _tus(**headers: object) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION,
            **{name.replace("_", "-"): str(value) for name, value in headers.items()}}


def _refuse(code: int, detail: Any, **headers: object) -> HTTPException:
    return HTTPException(code, detail, headers=_tus(**headers))


def _expires(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


def _count(name: str, value: str | None) -> int:
    if value is None or not (value.isascii() and value.isdigit()) or int(value) > MAX_INTEGER:
        raise _refuse(400, f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def tus_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise _refuse(412, f"send Tus-Resumable: {TUS_VERSION}", Tus_Version=TUS_VERSION)


Tus = [Depends(tus_version)]


def _length(value: str | None, *, limit: int, part_bytes: int) -> int:
    length = _count("Upload-Length", value)
    if length == 0:
        raise _refuse(400, "Upload-Length is 0: an empty file holds no dataset")
    if length > limit:
        raise _refuse(413, f"Upload-Length {length} is over the limit "
                      f"max_dataset_bytes={limit}")
    if length > part_bytes * MAX_PARTS:
        raise _refuse(413, f"Upload-Length {length} needs more than {MAX_PARTS} parts of "
                      f"s3_part_bytes={part_bytes}")
    return length


@router.options("", status_code=204)
async def options(settings: SettingsDep) -> Response:
    """What this server speaks of tus, and the largest file it takes."""
    return Response(status_code=204, headers={
        **_tus(Tus_Version=TUS_VERSION, Tus_Extension=EXTENSIONS,
               Tus_Max_Size=settings.max_dataset_bytes),
        MAX_BODY_HEADER: str(settings.max_body_bytes)})


@router.post("", status_code=201, dependencies=Tus, responses={
    **REFUSALS, 413: {"description": "Over max_dataset_bytes or the tenant's quota"},
    422: {"description": "A metadata value the service cannot use"}},
    openapi_extra=documented(UPLOAD_LENGTH, UPLOAD_METADATA))
async def create(request: Request, gate: GateDep, tenant: TenantBriefly,
                 settings: SettingsDep, check_quota: QuotaCheckDep) -> Response:
    """Create an upload of Upload-Length bytes; its URL is the answer's Location."""
    length = _length(request.headers.get("upload-length"),
                     limit=settings.max_dataset_bytes, part_bytes=settings.s3_part_bytes)
    try:
        meta = dataset_metadata(parse_metadata(request.headers.get("upload-metadata")))
    except MalformedMetadata as error:
        raise _refuse(400, str(error)) from error
    except ServiceError as error:
        raise http_error(error) from error

    def create_row(session: Session) -> Upload:
        if check_quota is not None:
            check_quota(session, tenant.id, length, settings)
        return create_upload(session, tenant_id=tenant.id, length=length, meta=meta,
                             expiry_s=settings.upload_expiry_s)

    try:
        upload = await gate.run(create_row)
    except ServiceError as error:
        raise http_error(error) from error
    return Response(status_code=201, headers=_tus(
        Location=f"{PREFIX}/{upload.id}", Upload_Expires=_expires(upload.expires_at)))


async def _owned(gate: GateDep, tenant_id: str, upload_id: str) -> Upload:
    upload = await gate.run(lambda session: get_upload(session, tenant_id=tenant_id,
                                                       upload_id=upload_id))
    if upload is None:
        raise _refuse(404, f"no upload {upload_id}")
    return upload


@router.head("/{upload_id}", dependencies=Tus, responses=REFUSALS, openapi_extra=documented())
async def head(upload_id: str, gate: GateDep, tenant: TenantBriefly) -> Response:
    """How many bytes are stored: send the rest from Upload-Offset."""
    upload = await _owned(gate, tenant.id, upload_id)
    headers = _tus(Upload_Offset=upload.offset, Upload_Length=upload.length,
                   Cache_Control="no-store", Upload_Expires=_expires(upload.expires_at))
    if upload.meta:
        headers["Upload-Metadata"] = format_metadata(upload.meta)
    return Response(status_code=200, headers=headers)


async def _refuse_patch(gate: GateDep, tenant_id: str, upload_id: str, offset: int,
                        request: Request) -> Response:
    """Why no lease could be taken, as the answer (or, for a retried last PATCH, 204)."""
    upload = await _owned(gate, tenant_id, upload_id)
    if upload.complete:
        if offset == upload.length and request.headers.get("content-length") == "0":
            return Response(status_code=204, headers=_tus(Upload_Offset=upload.length))
        raise _refuse(409, f"upload {upload_id} is complete ({upload.status})",
                      Upload_Offset=upload.offset)
    if offset != upload.offset:
        raise _refuse(409, f"Upload-Offset {offset} is not the upload's offset "
                      f"{upload.offset}", Upload_Offset=upload.offset)
    raise _refuse(409, "another request is writing to this upload; retry shortly",
                  Upload_Offset=upload.offset, Retry_After=5)


@router.patch("/{upload_id}", status_code=204, dependencies=Tus, responses={
    **REFUSALS, 409: {"description": "Not the stored offset, complete, or another request writes"},
    413: {"description": "The body goes past Upload-Length"},
    415: {"description": "The body is not application/offset+octet-stream"}},
    openapi_extra=documented(UPLOAD_OFFSET))
async def patch(upload_id: str, request: Request, gate: GateDep, tenant: TenantBriefly,
                store: StoreDep, settings: SettingsDep, ingests: IngestsDep) -> Response:
    """Store the body (Content-Type application/offset+octet-stream: the file's bytes from
    Upload-Offset); the answer's Upload-Offset is what is stored now."""
    offset = _count("Upload-Offset", request.headers.get("upload-offset"))
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != OFFSET_OCTET_STREAM:
        await _owned(gate, tenant.id, upload_id)  # no such upload: 404, whatever the body
        raise _refuse(415, f"a PATCH body is Content-Type {OFFSET_OCTET_STREAM}")
    declared = request.headers.get("content-length")
    taken = await gate.run(lambda session: take_writer(
        session, tenant_id=tenant.id, upload_id=upload_id, offset=offset))
    if taken is None:
        return await _refuse_patch(gate, tenant.id, upload_id, offset, request)
    attempt, received = taken
    ledger = GateLedger(gate, attempt, settings.upload_expiry_s)
    if declared is not None and declared.isascii() and declared.isdigit() and \
            offset + int(declared) > received.length:
        await ledger.save(received, hold=False)
        raise _refuse(413, f"the body goes past Upload-Length {received.length}",
                      Upload_Offset=offset)

    async def body() -> Any:
        try:
            async for chunk in request.stream():
                yield chunk
        except ClientDisconnect:
            return  # what came is stored: the client asks the offset and goes on

    writer = PartWriter(store, received, part_size=settings.s3_part_bytes, ledger=ledger)
    try:
        complete = await writer.receive(body())
    except PastLength as error:
        raise _refuse(413, str(error), Upload_Offset=received.offset) from error
    except ServiceError as error:  # another writer took over, or the tail was lost
        raise _refuse(409, str(error), Upload_Offset=received.offset) from error
    if complete:
        ingests.submit(upload_id, 1)
    return Response(status_code=204, headers=_tus(Upload_Offset=received.offset))


@router.delete("/{upload_id}", status_code=204, dependencies=Tus, responses={
    **REFUSALS, 409: {"description": "Being read into a dataset, or a request is writing to it"}},
    openapi_extra=documented())
async def terminate(upload_id: str, gate: GateDep, tenant: TenantBriefly,
                    store: StoreDep) -> Response:
    """Delete the upload and the bytes it holds (a dataset made of it stays)."""
    upload = await _owned(gate, tenant.id, upload_id)
    if upload.status == "ingesting":
        raise _refuse(409, f"upload {upload_id} is being read into a dataset; ask again "
                      "when it is ready or failed")
    removed = await gate.run(lambda session: remove_upload(
        session, upload_id=upload_id, attempt=upload.attempt, tenant_id=tenant.id))
    if not removed:
        raise _refuse(409, "a request is writing to this upload; retry shortly",
                      Retry_After=5)
    await to_thread.run_sync(store.delete_prefix, upload_prefix(upload_id))
    return Response(status_code=204, headers=_tus())


@router.get("/{upload_id}", response_model=UploadPublic,
            responses={404: {"description": "No such upload"}})
def read_upload(upload_id: str, session: SessionDep, tenant: CurrentTenant) -> UploadPublic:
    """Where the upload stands; once ready, the dataset made of it."""
    upload = get_upload(session, tenant_id=tenant.id, upload_id=upload_id)
    if upload is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no upload {upload_id}")
    dataset = None if upload.dataset_id is None else get_dataset(
        session, tenant_id=tenant.id, dataset_id=upload.dataset_id)
    return UploadPublic(
        id=upload.id, length=upload.length, offset=upload.offset, status=upload.status,
        dataset=None if dataset is None else DatasetPublic.model_validate(dataset),
        error=upload.error)
