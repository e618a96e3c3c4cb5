"""``/v1/jobs/{id}/...``: what a job produced, its loss history, weights and predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import ModelCacheDep, SessionDep, SinceStep, TenantJob
from api.errors import http_error
from api.responses import AUTHENTICATED, NO_SUCH_JOB, UNPARSABLE_BODY
from api.schemas.metrics import MetricsPublic
from api.schemas.predict import PredictRequest, PredictResponse
from api.services.errors import InvalidInput, ServiceError
from api.services.results import predict, weights_npz
from core.data import InvalidDataError
from db.queries.metrics import downsample, read_metrics

router = APIRouter(prefix="/v1/jobs", tags=["results"],
                   responses={**AUTHENTICATED, **NO_SUCH_JOB})


@router.get("/{job_id}/metrics", response_model=MetricsPublic)
def history(
    job: TenantJob,
    session: SessionDep,
    since_step: SinceStep = None,
    max_points: Annotated[int | None, Query(
        ge=2, le=100_000,
        description="Downsample to at most this many steps, keeping the first, the last "
        "and each interval's highest and lowest train_loss")] = None,
) -> MetricsPublic:
    """The loss history, one entry per recorded step."""
    columns = read_metrics(session, job_id=job.id, since_step=since_step)
    if max_points is not None:
        columns = downsample(columns, max_points)
    return MetricsPublic.model_validate(columns)


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
    checkpoint: Annotated[str, Query(
        pattern=r"^(final|best|latest|\d+)$",
        description="final, best, latest, or a step (0: the initial weights)")] = "final",
) -> Response:
    try:
        data, label = weights_npz(session=session, job=job, checkpoint=checkpoint)
    except ServiceError as error:
        raise http_error(error) from error
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{job.id}-{label}.npz"'})


@router.post("/{job_id}/predict", response_model=PredictResponse,
             responses={**UNPARSABLE_BODY,
                        409: {"description": "The job has no final weights yet"}})
def predict_rows(body: PredictRequest, job: TenantJob, session: SessionDep,
                 cache: ModelCacheDep) -> PredictResponse:
    """Outputs of the job's final model for rows ``X``, and the class labels of a classifier."""
    try:
        prediction = predict(session=session, job=job, X=body.X, cache=cache)
    except InvalidDataError as error:
        raise http_error(InvalidInput(("body", "X"), str(error), kind="invalid_data")) from error
    except ServiceError as error:
        raise http_error(error) from error
    labels = prediction.labels.tolist() if prediction.labels is not None else None
    return PredictResponse(outputs=prediction.outputs.tolist(), labels=labels)
