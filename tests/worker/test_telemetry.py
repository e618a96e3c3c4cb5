"""The worker's Prometheus histograms: the leader's exchange times each round it runs."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
from prometheus_client import REGISTRY

from core.optimizers import SGD
from worker.exchange import RemoteRanks
from worker.joining import Team
from worker.transport.links import LinkClosed, SocketLink
from worker.transport.messages import GRADS, decode, encode


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
