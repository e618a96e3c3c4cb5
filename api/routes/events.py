"""``GET /v1/jobs/{id}/events``: a job's progress as Server-Sent Events, until it ends."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header
from sse_starlette import EventSourceResponse

from api.deps import DetachedJob, GateDep, SinceStep
from api.errors import http_error
from api.responses import AUTHENTICATED, NO_SUCH_JOB
from api.services.errors import InvalidInput
from api.services.events import job_events
from db.base import MAX_INTEGER

router = APIRouter(prefix="/v1/jobs", tags=["results"],
                   responses={**AUTHENTICATED, **NO_SUCH_JOB})

# Comments every so often keep proxies and load balancers from closing a quiet stream.
PING_S = 15
# A client that stops reading is dropped instead of holding the stream forever.
SEND_TIMEOUT_S = 30


def resume_after(since_step: int | None, last_event_id: str | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return since_step
    # ASCII digits only: str.isdigit takes "²", which int() refuses.
    if not re.fullmatch(r"[0-9]+", last_event_id.strip()) or int(last_event_id) > MAX_INTEGER:
        raise http_error(InvalidInput(("header", "Last-Event-ID"),
                                      f"Last-Event-ID {last_event_id!r} is not a step number"))
    return int(last_event_id)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "status and progress events; see api.schemas.events"},
               404: {"description": "You have no such job"}},
)
async def events(
    job: DetachedJob,
    gate: GateDep,
    since_step: SinceStep = None,
    last_event_id: Annotated[str | None, Header(
        description="Sent by a reconnecting client: the id (step) of the last event it got; "
        "wins over since_step")] = None,
) -> EventSourceResponse:
    """Progress until the job ends: ``status`` events (the whole job) when the stream opens,
    when the job changes and when it ends; a ``progress`` event (``id`` = step) for every
    recorded step, in order. Reconnecting with ``Last-Event-ID`` misses no step."""
    after = resume_after(since_step, last_event_id)
    return EventSourceResponse(job_events(gate=gate, job_id=job.id, after=after),
                               ping=PING_S, send_timeout=SEND_TIMEOUT_S)
