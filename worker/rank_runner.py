"""A rank other than the leader: join, learn its shards, load the data, serve the steps."""

from __future__ import annotations

import logging

from core.data import InvalidDataError
from core.job import JobData
from core.spec import SpecError
from db.engine import SessionFactory, get_session_factory, session_scope
from db.models import Job
from db.settings import Settings, get_settings
from worker.loading import load_input
from worker.ranks import await_assignment, join, serve_rank
from worker.transport.join_plane import JoinPlane, Mailboxes, join_plane

log = logging.getLogger(__name__)

# How long after the leader's join window a joined rank still waits for its shards.
ASSIGN_GRACE_S = 1.0


def run_rank(job_id: str, attempt: int, rank: int, *, factory: SessionFactory | None = None,
             settings: Settings | None = None, plane: JoinPlane | None = None) -> str:
    """Serve as ``rank`` of attempt ``attempt`` of the job; returns what became of it.
    ``plane``: where to join (default: Redis at ``settings.redis_url``)."""
    factory = factory or get_session_factory()
    settings = settings or get_settings()
    if plane is None:
        if settings.redis_url is None:
            log.warning("rank %d of job %s cannot join: no Redis (redis_url) here", rank,
                        job_id)
            return "not needed"
        plane = join_plane(settings.redis_url)
    boxes = Mailboxes(job_id, attempt)
    if plane.is_marked(boxes.joining_closed):
        return "not needed"  # started after the leader's join window: it runs without us
    # Joined first, the database read after: the leader is waiting. The data loads between
    # joining and the assignment, while the leader builds its own trainer. A rank that joined
    # in time is almost always given shards; one that was not (the leader closed the window
    # first) has loaded into its cache for nothing.
    join(plane, boxes, rank)
    try:
        with session_scope(factory) as session:
            job = session.get(Job, job_id)
            if job is None or job.is_finished or job.attempt != attempt:
                return "not needed"  # the job ended, or its leader restarted, before this ran
            data = load_input(session, job)
        job_data = JobData.prepare(data.spec, data.X, data.y, checked=True,
                                   targets=data.targets)
    except (InvalidDataError, SpecError, ValueError) as exc:
        log.info("rank %d of job %s cannot load its data (%s); the leader reports it", rank,
                 job_id, exc)
        return "not needed"
    assignment = await_assignment(plane, boxes, rank, settings.rank_join_s + ASSIGN_GRACE_S)
    if assignment is None:
        return "not needed"  # joined too late: the leader trains without this rank
    owned, link = assignment
    served = serve_rank(link, rank, job_data, owned, settings.rank_timeout_s)
    log.info("rank %d of job %s served %d steps", rank, job_id, served)
    return f"served {served} steps"
