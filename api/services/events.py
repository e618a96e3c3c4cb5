"""A job's progress as a stream of events, read back from what the leader writes.

The leader writes metrics in batches (every ``metrics_flush_steps`` steps or
``metrics_flush_s`` seconds), so the stream polls the database at a short interval and sends
every row it has not sent yet, in step order. Each poll reads the job first and its rows after:
the leader marks a job ended in the same transaction as its last rows, so once a poll sees
the end, the rows read after it are the last ones, and the final status goes out after them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import anyio
from sqlalchemy.orm import Session
from sse_starlette import ServerSentEvent

from api.admission import DatabaseGate, Overloaded
from api.schemas.events import ProgressEvent
from api.schemas.jobs import JobPublic
from api.services.job_views import job_view
from db.models import FINISHED, Job
from db.queries.metrics import MetricColumns, read_metrics

POLL_S = 0.25
"""Seconds between polls of a job that has nothing new; well under the leader's flush period."""
BATCH_ROWS = 500
"""Most rows one poll reads, so that a stream catching up on a long job stays bounded."""
RETRY_MS = 1000
"""How soon an EventSource reconnects after losing the stream."""


@dataclass(frozen=True)
class Snapshot:
    job: JobPublic | None  # None once the job is gone (its tenant was deleted)
    rows: MetricColumns


def read_snapshot(session: Session, job_id: str, after: int | None, limit: int) -> Snapshot:
    """The job, then at most ``limit`` of its rows after step ``after``, in that order."""
    job = session.get(Job, job_id)
    view = job_view(session=session, job=job) if job is not None else None
    rows = read_metrics(session, job_id=job_id, since_step=after, limit=limit)
    return Snapshot(view, rows)


def status_event(job: JobPublic, *, retry: int | None = None) -> ServerSentEvent:
    # No id: the last event id stays the last step sent, which is where a reconnect resumes.
    return ServerSentEvent(data=job.model_dump_json(), event="status", retry=retry)


def progress_events(job: JobPublic, rows: MetricColumns) -> list[ServerSentEvent]:
    return [
        ServerSentEvent(
            id=str(step), event="progress",
            data=ProgressEvent(
                step=step, epoch=epoch, train_loss=train_loss, val_loss=val_loss,
                val_accuracy=val_accuracy, epochs=job.progress.epochs,
                total_steps=job.progress.total_steps, status=job.status,
                samples_per_s=job.throughput.samples_per_s,
            ).model_dump_json())
        for step, epoch, train_loss, val_loss, val_accuracy in zip(
            rows["step"], rows["epoch"], rows["train_loss"], rows["val_loss"],
            rows["val_accuracy"], strict=True)
    ]


def _changes(job: JobPublic) -> tuple[object, ...]:
    """What makes a status event worth sending while the job runs."""
    return job.status, job.workers, job.attempt, job.cancel_requested


async def job_events(*, gate: DatabaseGate, job_id: str, after: int | None,
                     poll_s: float = POLL_S, batch_rows: int = BATCH_ROWS
                     ) -> AsyncIterator[ServerSentEvent]:
    """Events of job ``job_id`` from the step after ``after`` (None: from the start) until
    it ends: a status event, the progress of each step in order, status events when the job
    changes, and a final status event."""
    sent: tuple[object, ...] | None = None
    while True:
        # The queries block: they run in the thread pool, off the event loop, in a slot of
        # the gate; a stream that finds none tries again at its next poll.
        try:
            snapshot = await gate.run(partial(read_snapshot, job_id=job_id, after=after,
                                              limit=batch_rows))
        except Overloaded:
            await anyio.sleep(poll_s)
            continue
        job = snapshot.job
        if job is None:
            return
        ended = job.status in FINISHED
        if not ended and _changes(job) != sent:
            yield status_event(job, retry=RETRY_MS if sent is None else None)
            sent = _changes(job)
        for event in progress_events(job, snapshot.rows):
            yield event
        if snapshot.rows["step"]:
            after = snapshot.rows["step"][-1]
        if len(snapshot.rows["step"]) == batch_rows:
            continue  # more rows wait: read them before deciding anything else
        if ended:
            yield status_event(job, retry=RETRY_MS if sent is None else None)
            return
        await anyio.sleep(poll_s)
