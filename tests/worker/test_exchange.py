"""The leader's exchange with its ranks (``worker.exchange``), the ranks being threads of
this process that join through Redis and step over their links."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from core.job import JobData
from core.optimizers import SGD
from core.spec import ModelSpec, OptimizerSpec, TrainSpec
from core.training import StepEvent, Trainer
from tests.utils.data import blobs
from tests.utils.fake_redis import fake_join_plane
from tests.utils.services import redis_url
from worker.exchange import RemoteRanks
from worker.joining import (
    Team,
    await_assignment,
    gather_ranks,
    join,
    slot_bytes_for,
)
from worker.rank import serve_rank
from worker.shutdown import SHUTTING_DOWN
from worker.transport.join_plane import JoinPlane, Mailboxes, join_plane
from worker.transport.links import Buffers, Link, LinkClosed, SocketLink
from worker.transport.messages import GRADS, PARAMS, REPLICA, SUMS, decode, encode

EXACT = TrainSpec(model=ModelSpec(hidden=(12,), activation="tanh"),
                  optimizer=OptimizerSpec(name="adam", lr=0.01), epochs=3, batch_size=40,
                  shards=5, seed=4, l2=1e-4)
# Local SGD: rounds of 3 steps, cut at the epochs' ends (6 steps each): 6 rounds in all. Adam's
# state (moments and step count) travels with every round.
LOCAL = replace(EXACT, sync_every=3)
X, Y = blobs(n=300, seed=3, dtype=np.float32)


@dataclass(frozen=True)
class TrainedRun:
    """What a run left: its parameters and every step's event and, run with ranks, the
    shards of each rank at its end and the kinds of the messages sent to each."""

    params: np.ndarray
    events: list[StepEvent]
    total_steps: int
    members: dict[int, list[int]] = field(default_factory=dict)
    sent: dict[int, list[bytes]] = field(default_factory=dict)


def _train(spec: TrainSpec, plane: JoinPlane, listen_on: str, shared_dir: Path | None,
           ranks: int, *, dying_rank_sends: int | None = None,
           shutdown_after: int | None = None) -> TrainedRun:
    boxes = Mailboxes(uuid.uuid4().hex, 1)
    threads = []
    for rank in range(1, ranks):
        def run(rank: int = rank) -> None:
            join(plane, boxes, rank)
            job = JobData.prepare(spec, X, Y)
            assignment = await_assignment(plane, boxes, rank, 10.0)
            assert assignment is not None
            owned, link = assignment
            if dying_rank_sends is not None and rank == ranks - 1:
                link = _Dying(link, dying_rank_sends)
            if shutdown_after is not None and rank == ranks - 1:
                link = _ShuttingDown(link, shutdown_after)
            serve_rank(link, rank, job, owned, 10.0)

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
    leader = Trainer(spec, X, Y)
    team = gather_ranks(plane, boxes, ranks - 1, spec.shards, 5.0, listen_on, 5.0,
                        shared_dir=shared_dir, slot_bytes=slot_bytes_for(leader.params.nbytes))
    assert len(team.members) == ranks - 1
    # TCP links, through shared slots when given a directory
    assert {isinstance(link, SocketLink) and link.shared
            for link in team.links.values()} == {shared_dir is not None}
    sent: dict[int, list[bytes]] = {rank: [] for rank in team.links}
    team = Team(team.members, {rank: _Recorded(link, sent[rank])
                               for rank, link in team.links.items()})
    remote = RemoteRanks(team, spec.shards, leader.params, timeout=1.0,
                         local_sgd=spec.sync_every > 1)
    leader.attach(remote)
    events = list(leader.steps())
    members = remote.members  # before close clears them
    remote.close()
    for thread in threads:
        thread.join(10)
    return TrainedRun(leader.params, events, leader.total_steps, members, sent)


class _Wrapped:
    """A link around another, for a test to see or change what it sends; an exchange is a
    send (this one's) and a receive."""

    def __init__(self, link: Link) -> None:
        self._link = link

    def send(self, parts: Buffers) -> None:
        self._link.send(parts)

    def receive(self, timeout: float) -> bytes | memoryview:
        return self._link.receive(timeout)

    def exchange(self, parts: Buffers, timeout: float) -> bytes | memoryview:
        self.send(parts)
        return self.receive(timeout)

    def close(self) -> None:
        self._link.close()


class _Recorded(_Wrapped):
    """A leader's link that records the kind of each message it sends."""

    def __init__(self, link: Link, kinds: list[bytes]) -> None:
        super().__init__(link)
        self._kinds = kinds

    def send(self, parts: Buffers) -> None:
        self._kinds.append(bytes(parts[0][:1]))
        self._link.send(parts)

    def exchange(self, parts: Buffers, timeout: float) -> bytes | memoryview:
        self._kinds.append(bytes(parts[0][:1]))
        return self._link.exchange(parts, timeout)


class _Dying(_Wrapped):
    """A rank's link that dies after ``sends`` replies, as when the rank is killed."""

    def __init__(self, link: Link, sends: int) -> None:
        super().__init__(link)
        self._left = sends

    def send(self, parts: Buffers) -> None:
        self._left -= 1
        if self._left < 0:
            self._link.close()
            raise LinkClosed("killed")
        self._link.send(parts)


@pytest.fixture(scope="module", params=["exact", "local SGD"])
def spec(request: pytest.FixtureRequest) -> TrainSpec:
    return EXACT if request.param == "exact" else LOCAL


@pytest.fixture(scope="module")
def reference(spec: TrainSpec) -> TrainedRun:
    trainer = Trainer(spec, X, Y)
    events = list(trainer.steps())
    return TrainedRun(trainer.params, events, trainer.total_steps)


Transport = tuple[JoinPlane, str, Path | None]


@pytest.fixture(params=["fakeredis+tcp", "fakeredis+tcp+shared",
                        pytest.param("redis+tcp", marks=pytest.mark.services),
                        pytest.param("redis+tcp+shared", marks=pytest.mark.services)])
def transport(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Transport]:
    """Redis (or fakeredis) to join, TCP to step, as across hosts, or with the steps' bytes
    in shared slots, as on one host."""
    shared = tmp_path_factory.mktemp("shm") if request.param.endswith("shared") else None
    plane = (fake_join_plane() if request.param.startswith("fakeredis")
             else join_plane(redis_url()))
    yield plane, "127.0.0.1", shared


@pytest.mark.parametrize("ranks", [2, 3, 5])
def test_any_number_of_ranks_gives_the_single_process_bits(spec: TrainSpec,
                                                           transport: Transport, ranks: int,
                                                           reference: TrainedRun) -> None:
    trained = _train(spec, *transport, ranks)
    assert np.array_equal(trained.params, reference.params)
    assert trained.events == reference.events


def test_a_pair_sends_the_parameters_once_then_only_partial_sums(transport: Transport) -> None:
    trained = _train(EXACT, *transport, 2)
    alone = Trainer(EXACT, X, Y)
    alone.run()
    assert np.array_equal(trained.params, alone.params)
    # The replica's parameters and Adam's state once, then the leader's sums at every step.
    assert trained.sent == {1: [REPLICA] + [SUMS] * trained.total_steps}
    # More ranks: the parameters go out to each at every step.
    star = _train(EXACT, *transport, 3)
    assert star.sent == {rank: [PARAMS] * star.total_steps for rank in (1, 2)}


def test_a_rank_that_dies_is_dropped_and_the_result_is_unchanged(spec: TrainSpec,
                                                                  transport: Transport,
                                                                  reference: TrainedRun) -> None:
    trained = _train(spec, *transport, 3, dying_rank_sends=3)
    assert np.array_equal(trained.params, reference.params)
    assert trained.events == reference.events
    # Shards 0-1, 2-3 and 4 on three ranks; without rank 2, the two left share them again.
    assert trained.members == {1: [3, 4]}
    if spec.sync_every == 1:  # and, exact, as a pair: the one left gets a replica
        kinds = trained.sent[1]
        assert REPLICA in kinds and set(kinds[kinds.index(REPLICA) + 1:]) == {SUMS}


class _ShuttingDown(_Wrapped):
    """A rank's link whose worker starts shutting down after ``sends`` replies."""

    def __init__(self, link: Link, sends: int) -> None:
        super().__init__(link)
        self._left = sends

    def send(self, parts: Buffers) -> None:
        self._link.send(parts)
        self._left -= 1
        if self._left == 0:
            SHUTTING_DOWN.set()


def test_ranks_of_a_worker_shutting_down_leave_and_the_result_is_unchanged(
        spec: TrainSpec, transport: Transport, reference: TrainedRun) -> None:
    try:
        trained = _train(spec, *transport, 3, shutdown_after=2)
    finally:
        SHUTTING_DOWN.clear()
    assert np.array_equal(trained.params, reference.params)


def _slow_rank(link: SocketLink, rank: int) -> None:
    """A rank of one shard (its own number) whose gradient leaves 20 ms after the
    parameters arrive."""
    try:
        while True:
            message = decode(link.receive(5.0))
            time.sleep(0.02)
            link.send(encode(GRADS, round=message.round, step=message.step, rank=rank,
                             shards=[rank], losses=[[0.5]], nodes=[(rank, rank + 1)],
                             buffers=[np.ones(3, dtype=np.float32)]))
    except LinkClosed:
        link.close()


def _linked_ranks(ranks: list[int]) -> tuple[Team, list[threading.Thread]]:
    links, threads = {}, []
    with socket.create_server(("127.0.0.1", 0)) as server:
        for rank in ranks:
            theirs = socket.create_connection(server.getsockname())
            ours, _ = server.accept()
            links[rank] = SocketLink(ours, 5.0)
            threads.append(threading.Thread(target=_slow_rank,
                                            args=(SocketLink(theirs, 5.0), rank)))
            threads[-1].start()
    return Team({rank: [rank] for rank in ranks}, dict(links)), threads


def _rounds() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("shardtrain_sync_round_seconds_count") or 0.0
    total = REGISTRY.get_sample_value("shardtrain_sync_round_seconds_sum") or 0.0
    return count, total


def test_a_round_is_timed_from_sending_the_parameters_to_the_ranks_gradients() -> None:
    team, threads = _linked_ranks([1, 2])
    params = np.zeros(3, dtype=np.float32)
    rounds = RemoteRanks(team, 3, params, 5.0, local_sgd=False)
    count, total = _rounds()
    try:
        for step in range(2):
            rounds.begin(step, params, [SGD(3, np.dtype(np.float32))])
            assert (1, 2) in rounds and (0, 1) not in rounds
            assert rounds.await_node((1, 2)).sum() == 3
            assert rounds.await_node((2, 3)).sum() == 3
            assert rounds.losses() == {1: [0.5], 2: [0.5]}
    finally:
        rounds.close()
        for thread in threads:
            thread.join(5)
    new_count, new_total = _rounds()
    assert new_count - count == 2
    assert 0.04 <= new_total - total < 1.0
