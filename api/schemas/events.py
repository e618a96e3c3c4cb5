"""What ``GET /v1/jobs/{id}/events`` sends: Server-Sent Events of two kinds.

- ``event: status`` carries the whole job (``JobPublic``): first when the stream opens, then
  whenever its status, ranks or cancel request change, and last when it has ended.
- ``event: progress`` carries one recorded step (``ProgressEvent``), with ``id: <step>``, so a
  client that reconnects with ``Last-Event-ID`` resumes after the last step it received.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from db.models import JobStatus


class ProgressEvent(BaseModel):
    step: int
    epoch: int
    train_loss: float | None = Field(description="Mean loss over the step's global batch.")
    val_loss: float | None = Field(description="At epoch ends; null elsewhere.")
    val_accuracy: float | None = Field(description="At epoch ends, for classifiers.")
    epochs: int
    total_steps: int
    status: JobStatus
    samples_per_s: float | None = Field(
        description="The job's throughput when the step was read (as in GET /v1/jobs/{id}).")
