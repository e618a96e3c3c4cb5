"""A rank task that finds no place in its job's attempt ends at once, whatever the reason."""

from __future__ import annotations

import time

import numpy as np

from db.blobs import blob_store
from db.engine import SessionFactory, session_scope
from db.models import Job
from db.settings import Settings
from tests.utils.data import blobs
from tests.utils.fake_redis import fake_join_plane
from tests.utils.jobs import add_dataset, add_job, claimed
from worker.rank import run_rank
from worker.transport.join_plane import Mailboxes


def test_a_rank_of_a_replaced_ended_or_closed_attempt_is_not_needed(
        factory: SessionFactory, settings: Settings) -> None:
    with session_scope(factory) as session:
        X, y = blobs(n=80, seed=0, dtype=np.float32)
        job = add_job(session, add_dataset(session, blob_store(settings), X, y),
                      {"epochs": 2, "batch_size": 16, "shards": 2})
        job_id = claimed(claimed(job), held=1).id  # its leader restarted: attempt 2
    started, plane = time.monotonic(), fake_join_plane()
    # Its leader restarted (attempt 2 now leads), then the job ended.
    assert run_rank(job_id, 1, 1, factory=factory, settings=settings,
                    plane=plane) == "not needed"
    with session_scope(factory) as session:
        ended = session.get(Job, job_id)
        assert ended is not None
        ended.mark_cancelled()
    assert run_rank(job_id, 2, 1, factory=factory, settings=settings,
                    plane=plane) == "not needed"
    # Never waited for an assignment (the leader's join window and grace, over a second).
    assert time.monotonic() - started < 1.0
    # A rank task that starts after its leader closed the join window does not even join.
    boxes = Mailboxes(job_id, 3)
    plane.mark(boxes.joining_closed)
    assert run_rank(job_id, 3, 1, factory=factory, settings=settings,
                    plane=plane) == "not needed"
    assert plane.receive(boxes.leader, 0.0) is None
