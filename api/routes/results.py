"""``/v1/jobs/{id}/...``: what a job produced, its loss history, weights and predictions."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import (
    DetachedJob,
    GateDep,
    ModelCacheDep,
    SessionDep,
    SinceStep,
    StoreDep,
    TenantJob,
)
from api.errors import http_error
from api.responses import AUTHENTICATED, NO_SUCH_JOB, UNPARSABLE_BODY
from api.schemas.metrics import MetricsPublic
from api.schemas.predict import PredictRequest, PredictResponse
from api.services.errors import InvalidInput, ServiceError
from api.services.metrics import (
    HistoryPages,
    csv_rows,
    downsampled,
    history_csv,
    history_json,
)
from api.services.results import predict, weights_npz
from core.data import InvalidDataError

router = APIRouter(prefix="/v1/jobs", tags=["results"],
                   responses={**AUTHENTICATED, **NO_SUCH_JOB})


@router.get("/{job_id}/metrics", response_class=StreamingResponse, responses={200: {
    "model": MetricsPublic,
    "content": {"text/csv": {"schema": {"type": "string"}}},
    "description": "The columns as JSON, or with format=csv one line per step"}})
async def history(
    job: DetachedJob,
    gate: GateDep,
    since_step: SinceStep = None,
    max_points: Annotated[int | None, Query(
        ge=2, le=100_000,
        description="Downsample to at most this many steps, keeping the first, the last "
        "and each interval's highest and lowest train_loss")] = None,
    format: Annotated[Literal["json", "csv"], Query(
        description="json: columnar; csv: a header row, then one line per step")] = "json",
) -> Response:
    """The loss history, one entry per recorded step; the whole of it is streamed, however
    long, and a downsampled read keeps at most ``max_points`` rows in memory."""
    if max_points is not None:
        columns = await gate.run(partial(downsampled, job_id=job.id, since_step=since_step,
                                         max_points=max_points))
        if format == "csv":
            body = ",".join(columns) + "\n" + csv_rows(zip(*columns.values(), strict=True))
            return Response(body, media_type="text/csv")
        return JSONResponse(MetricsPublic.model_validate(columns).model_dump())
    pages = HistoryPages(gate, job.id, since_step)
    await pages.start()
    if format == "csv":
        return StreamingResponse(history_csv(pages), media_type="text/csv")
    return StreamingResponse(history_json(pages), media_type="application/json")


@router.get(
    "/{job_id}/weights",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}},
                     "description": "An .npz of W1, b1, W2, b2, ... and the job spec"},
               404: {"description": "No weights at that checkpoint (yet)"}},
)
def weights(
    job: TenantJob,
    session: SessionDep,
    store: StoreDep,
    checkpoint: Annotated[str, Query(
        pattern=r"^(final|best|latest|\d+)$",
        description="final, best, latest, or a step (0: the initial weights)")] = "final",
) -> Response:
    try:
        data, label = weights_npz(session=session, store=store, job=job,
                                  checkpoint=checkpoint)
    except ServiceError as error:
        raise http_error(error) from error
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{job.id}-{label}.npz"'})


@router.post("/{job_id}/predict", response_model=PredictResponse,
             responses={**UNPARSABLE_BODY,
                        409: {"description": "The job has no final weights yet"}})
def predict_rows(body: PredictRequest, job: TenantJob, session: SessionDep, store: StoreDep,
                 cache: ModelCacheDep) -> PredictResponse:
    """Outputs of the job's final model for rows ``X``, and the class labels of a classifier."""
    try:
        prediction = predict(session=session, store=store, job=job, X=body.X, cache=cache)
    except InvalidDataError as error:
        raise http_error(InvalidInput(("body", "X"), str(error), kind="invalid_data")) from error
    except ServiceError as error:
        raise http_error(error) from error
    labels = prediction.labels.tolist() if prediction.labels is not None else None
    return PredictResponse(outputs=prediction.outputs.tolist(), labels=labels)
