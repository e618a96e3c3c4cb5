"""A leader's ranks join and link while it prepares (``worker.joining.Gathering``)."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from core.spec import TrainSpec
from core.training import Trainer
from db.settings import Settings
from tests.utils.data import blobs
from tests.utils.fake_redis import FAKE_REDIS_URL, fake_join_plane
from tests.utils.services import redis_url
from worker.joining import Gathering, await_assignment, join, plan_ranks, rank_limit
from worker.transport.join_plane import Mailboxes, join_plane
from worker.transport.links import LinkClosed

SPEC = TrainSpec.from_dict({"model": {"hidden": [8]}, "epochs": 1, "batch_size": 16,
                            "shards": 4, "seed": 3})
# Shorter than the leader's preparation below: before the gathering ran beside it, a rank
# gave up waiting for its shards while the leader was still loading.
RANK_WAIT_S = 0.3


def _settings() -> Settings:
    return Settings(redis_url=FAKE_REDIS_URL, rank_join_s=2.0, rank_timeout_s=5.0)


def _trainer() -> Trainer:
    return Trainer(SPEC, *blobs(n=160, seed=1, dtype=np.float32))


def test_a_rank_is_given_its_shards_while_the_leader_prepares() -> None:
    job_id, settings, trainer = uuid.uuid4().hex, _settings(), _trainer()
    boxes, plane = Mailboxes(job_id, 1), fake_join_plane()
    assigned: list[list[int]] = []

    def rank() -> None:
        join(plane, boxes, 1)
        assignment = await_assignment(plane, boxes, 1, RANK_WAIT_S)
        if assignment is not None:
            assigned.append(assignment[0])
            assignment[1].close()

    thread = threading.Thread(target=rank)
    with Gathering(job_id, 1, 2, SPEC, trainer.job.net, settings, plane) as gathering:
        thread.start()
        time.sleep(2 * RANK_WAIT_S)  # the leader loads its data and builds its trainer
        thread.join(5)
        team = gathering.team()
        assert team is not None and team.members == {1: [2, 3]}
        team.close()
    assert assigned == [[2, 3]]


def test_a_leader_that_stops_before_training_lets_its_ranks_go() -> None:
    job_id, settings, trainer = uuid.uuid4().hex, _settings(), _trainer()
    boxes, plane = Mailboxes(job_id, 1), fake_join_plane()
    join(plane, boxes, 1)
    with Gathering(job_id, 1, 2, SPEC, trainer.job.net, settings, plane):
        assignment = await_assignment(plane, boxes, 1, 5.0)
        assert assignment is not None
        # The leader fails (bad data, say) and never attaches its ranks.
    with pytest.raises(LinkClosed):
        assignment[1].receive(1.0)


@pytest.mark.services
def test_a_leader_that_stops_does_not_wait_for_a_rank_that_never_links() -> None:
    # Over Redis, where a joined rank is waited for on a TCP listener for rank_timeout_s.
    url = redis_url()
    job_id, trainer = uuid.uuid4().hex, _trainer()
    settings = Settings(redis_url=url, rank_join_s=2.0, rank_timeout_s=10.0)
    join(join_plane(url), Mailboxes(job_id, 1), 1)  # and then fails, never linking
    started = time.monotonic()
    with Gathering(job_id, 1, 2, SPEC, trainer.job.net, settings):
        time.sleep(RANK_WAIT_S)  # the join has been read and answered
    assert time.monotonic() - started < settings.rank_timeout_s / 2


def test_a_leader_alone_gathers_nothing() -> None:
    with Gathering(uuid.uuid4().hex, 1, 1, SPEC, _trainer().job.net, _settings()) as gathering:
        assert gathering.team() is None


def test_without_redis_a_job_runs_on_one_rank() -> None:
    # A dev cluster on a Redis broker without REDIS_URL: ranks could start but never join.
    cluster = Settings(broker_url="redis://127.0.0.1:6379/0", redis_url=None)
    assert rank_limit(SPEC, 4, cluster) == 1
    assert rank_limit(SPEC, 4, cluster.model_copy(update={"redis_url": FAKE_REDIS_URL})) == 4
    assert rank_limit(SPEC, 4, Settings(redis_url=FAKE_REDIS_URL)) == 1  # embedded: one thread


def test_plan_ranks_gives_contiguous_near_equal_blocks() -> None:
    assert plan_ranks(8, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert plan_ranks(4, 1) == [[0, 1, 2, 3]]
