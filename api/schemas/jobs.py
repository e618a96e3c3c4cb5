"""Job bodies: the submitted job spec, and the job as clients see it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    model_validator,
)
from pydantic.dataclasses import dataclass

from core.spec import MAX_COUNT, TrainSpec
from db.models import Job, JobStatus
from db.queries.metrics import LatestMetrics

TagKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
TagValue = Annotated[str, StringConstraints(max_length=200)]
MAX_TAGS = 50


# A pydantic dataclass over the core's TrainSpec: pydantic checks the types of every field
# (nested ModelSpec and OptimizerSpec too), then TrainSpec.__post_init__ runs the core's own
# value checks, so the API refuses exactly what the core refuses, with the core's message.
# ``extra="forbid"`` turns unknown fields, and fields a client must not set (id, tenant,
# status), into errors naming them; ``allow_inf_nan=False`` refuses NaN and Infinity.
@dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class JobCreate(TrainSpec):
    """A job spec: the service fields below plus every field of the numeric spec."""

    dataset: str = Field(min_length=1, max_length=64, description="Id of one of your datasets.")
    name: str = Field(default="job", min_length=1, max_length=200)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS)
    max_workers: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] = Field(
        default="auto", description="Most ranks to run the job on; auto: what is free."
    )
    init: str | None = Field(
        default=None,
        description="Id of an earlier job of yours whose final weights start this one.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _types_as_sent(cls, data: Any, handler: ModelWrapValidatorHandler[JobCreate]
                       ) -> JobCreate:
        """Once pydantic has accepted the body (naming every field it refuses), the core's
        checks run again on the numeric fields as the client sent them (pydantic turns "0.1"
        into a number and true into 1 before ``__post_init__`` sees them), and those that
        only new specs must pass."""
        spec = handler(data)
        if isinstance(data, dict):
            TrainSpec.from_job_spec(data)
        spec.optimizer.check_all_used()
        return spec

    def normalized(self) -> dict[str, Any]:
        """Every field, defaults filled in: what is stored as the job's spec."""
        return self.to_dict()


class Progress(BaseModel):
    epoch: int
    epochs: int
    step: int
    total_steps: int


class LatestMetricsPublic(BaseModel):
    """The last recorded step, and the validation values of the last epoch end before it."""

    model_config = ConfigDict(from_attributes=True)

    step: int
    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None


class BestMetrics(BaseModel):
    val_loss: float
    step: int


class FinalMetrics(BaseModel):
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None


class JobError(BaseModel):
    type: str
    message: str


class Timings(BaseModel):
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_s: float = Field(description="Seconds from submission to the first start (or now).")
    running_s: float | None = Field(description="Seconds from the first start to the end "
                                                "(or now); null before it starts.")


class Throughput(BaseModel):
    samples_per_s: float | None = Field(
        description="Training rows per second: measured at the end; while the job runs, "
        "estimated as steps x batch_size over the running time."
    )


class JobPublic(BaseModel):
    id: str
    name: str
    dataset: str | None  # None once the dataset was deleted
    status: JobStatus
    tags: dict[str, str]
    progress: Progress
    latest: LatestMetricsPublic | None
    best: BestMetrics | None
    final: FinalMetrics | None
    error: JobError | None
    timings: Timings
    throughput: Throughput
    attempt: int
    workers: int | None = Field(description="Ranks training the job as of its last progress "
                                "write (fewer once one is lost); none while it is queued.")
    cancel_requested: bool
    spec: dict[str, Any]

    @classmethod
    def of(cls, job: Job, *, latest: LatestMetrics | None, now: datetime) -> JobPublic:
        """The public view of ``job``, with ``latest`` its last metrics (if any) at ``now``."""
        queued_until = job.started_at or job.finished_at or now
        running_s = ((job.finished_at or now) - job.started_at).total_seconds() \
            if job.started_at is not None else None
        return cls(
            id=job.id,
            name=job.name,
            dataset=job.dataset_id,
            status=job.status,
            tags=job.tags,
            progress=Progress(epoch=job.epoch, epochs=job.spec["epochs"], step=job.step,
                              total_steps=job.total_steps),
            latest=LatestMetricsPublic.model_validate(latest) if latest is not None else None,
            best=(BestMetrics(val_loss=job.best_val_loss, step=job.best_step)
                  if job.best_val_loss is not None and job.best_step is not None else None),
            final=(FinalMetrics(train_loss=job.final_train_loss, val_loss=job.final_val_loss,
                                val_accuracy=job.final_val_accuracy)
                   if job.status == "succeeded" else None),
            error=(JobError(type=job.error_type, message=job.error_message or "")
                   if job.error_type is not None else None),
            timings=Timings(created_at=job.created_at, started_at=job.started_at,
                            finished_at=job.finished_at,
                            queued_s=(queued_until - job.created_at).total_seconds(),
                            running_s=running_s),
            throughput=Throughput(samples_per_s=_samples_per_s(job, running_s)),
            attempt=job.attempt,
            workers=job.workers,
            cancel_requested=job.cancel_requested,
            spec=job.spec,
        )


def _samples_per_s(job: Job, running_s: float | None) -> float | None:
    if job.samples_per_s is not None:
        return job.samples_per_s
    if job.status != "running" or not running_s or job.step == 0:
        return None
    # Counts every step as a full batch (the last batch of an epoch may be shorter): good
    # enough for a progress display, and it needs neither the dataset nor a metrics query.
    return job.step * job.spec["batch_size"] / running_s


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None
