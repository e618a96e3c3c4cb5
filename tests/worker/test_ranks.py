"""Leader and ranks exchanging through the data plane, as threads of this process."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from core.job import JobData
from core.spec import ModelSpec, OptimizerSpec, TrainSpec
from core.training import Trainer
from tests.utils.data import blobs
from tests.utils.services import redis_url
from worker.dataplane import DataPlane, MemoryDataPlane, RedisDataPlane
from worker.messages import JOIN, encode
from worker.ranks import Mailboxes, RemoteRanks, gather_ranks, plan_ranks, serve_rank

SPEC = TrainSpec(model=ModelSpec(hidden=(12,), activation="tanh"),
                 optimizer=OptimizerSpec(name="adam", lr=0.01), epochs=3, batch_size=40,
                 shards=5, seed=4, l2=1e-4)
X, Y = blobs(n=300, seed=3, dtype=np.float32)


def _train(plane: DataPlane, ranks: int, *, kill_rank_after: int | None = None,
           timeout: float = 5.0) -> Trainer:
    boxes = Mailboxes(uuid.uuid4().hex, 1)
    threads = []
    for rank in range(1, ranks):
        def run(rank: int = rank) -> None:
            plane.send(boxes.leader, encode(JOIN, rank=rank))
            from worker.messages import decode

            assigned = decode(plane.receive(boxes.rank(rank), 5.0) or b"")
            job = JobData.prepare(SPEC, X, Y)
            if kill_rank_after is not None and rank == ranks - 1:
                # A rank that dies: it serves a few steps, then never answers again.
                limited = _Limited(plane, kill_rank_after)
                serve_rank(limited, boxes, rank, job, assigned.shards.tolist(), timeout)
            else:
                serve_rank(plane, boxes, rank, job, assigned.shards.tolist(), timeout)

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
    members = gather_ranks(plane, boxes, ranks - 1, SPEC.shards, window=5.0)
    assert len(members) == ranks - 1
    leader = Trainer(SPEC, X, Y)
    remote = RemoteRanks(plane, boxes, members, SPEC.shards, leader.params, timeout=1.0)
    leader.remote = remote
    events = list(leader.steps())
    remote.close()
    for thread in threads:
        thread.join(10)
    leader.events = events  # type: ignore[attr-defined]
    return leader


class _Limited:
    """A data plane through which a rank goes silent after ``sends`` replies."""

    def __init__(self, plane: DataPlane, sends: int) -> None:
        self._plane, self._left = plane, sends

    def send(self, mailbox: str, payload: bytes) -> None:
        if self._left > 0:
            self._left -= 1
            self._plane.send(mailbox, payload)

    def receive(self, mailbox: str, timeout: float) -> bytes | None:
        return self._plane.receive(mailbox, timeout) if self._left > 0 else None

    def drop(self, *mailboxes: str) -> None:
        self._plane.drop(*mailboxes)


@pytest.fixture(scope="module")
def reference() -> Trainer:
    trainer = Trainer(SPEC, X, Y)
    trainer.events = list(trainer.steps())  # type: ignore[attr-defined]
    return trainer


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
def plane(request: pytest.FixtureRequest) -> Iterator[DataPlane]:
    yield MemoryDataPlane() if request.param == "memory" else RedisDataPlane(redis_url())


@pytest.mark.parametrize("ranks", [2, 3, 5])
def test_any_number_of_ranks_gives_the_single_process_bits(plane: DataPlane, ranks: int,
                                                           reference: Trainer) -> None:
    trained = _train(plane, ranks)
    assert np.array_equal(trained.params, reference.params)
    assert trained.events == reference.events  # type: ignore[attr-defined]


def test_a_rank_that_dies_is_dropped_and_the_result_is_unchanged(plane: DataPlane,
                                                                  reference: Trainer) -> None:
    trained = _train(plane, 3, kill_rank_after=7)
    assert np.array_equal(trained.params, reference.params)


def test_plan_ranks_gives_contiguous_near_equal_blocks() -> None:
    assert plan_ranks(8, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert plan_ranks(4, 1) == [[0, 1, 2, 3]]
