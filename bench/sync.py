"""Synchronisation rounds: shardtrain's leader/rank exchange against a Celery chord per step.

One round is what a leader pays per step beyond compute, exactly as a job's steps exchange:
with more than two ranks the parameters out to every other rank and a partial gradient sum
back from each; with two (a pair, worker.exchange) the leader's partial sum one way and the
rank's the other, crossing. Ranks are separate processes that answer at once (no compute), so
the figure is the exchange alone: over the links the service uses, with the payloads in shared
memory (ranks on the leader's host, as here) and over TCP alone (ranks on other hosts), and
through Redis mailboxes (the design those links replaced, kept for the comparison). The chord
does the star's exchange through Redis keys: the leader stores the parameters, one task per
rank reads them and stores its gradient, a callback reads and sums the gradients, and the
leader waits for the callback.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
import uuid
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import redis
from celery import Celery, chord

from core.optimizers import SGD
from db.settings import Settings
from worker.exchange import RemoteRanks
from worker.joining import Team, await_assignment, gather_ranks, join, slot_bytes_for
from worker.transport.join_plane import JoinPlane, Mailboxes, join_plane
from worker.transport.links import Buffers, Link, LinkClosed
from worker.transport.messages import GRADS, SUMS, decode, encode

PARAMS_COUNT = 100_000  # 400 KB of float32, as PEERS.md measured
DATA_PLANE_URL = "redis://127.0.0.1:6379/9"
CHORD_BROKER_URL = "redis://127.0.0.1:6379/10"
ROOT = Path(__file__).resolve().parent.parent


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


# --- shardtrain's exchange ------------------------------------------------------------------

Transport = Literal["shared", "tcp", "redis"]


class MailboxLink:
    """A link as two Redis mailboxes, every payload copied into the server and out of it: how
    ranks stepped before they had links of their own, kept to compare against."""

    def __init__(self, plane: JoinPlane, outbox: str, inbox: str) -> None:
        self._plane, self._outbox, self._inbox = plane, outbox, inbox

    def send(self, parts: Buffers) -> None:
        self._plane.send(self._outbox, b"".join(parts))

    def receive(self, timeout: float) -> bytes:
        payload = self._plane.receive(self._inbox, timeout)
        if not payload:  # nothing came, or the other side closed
            raise LinkClosed(f"nothing in {self._inbox} for {timeout} s")
        return payload

    def exchange(self, parts: Buffers, timeout: float) -> bytes:
        self.send(parts)  # a mailbox holds any payload: nobody waits for it to be read
        return self.receive(timeout)

    def close(self) -> None:
        self._plane.send(self._outbox, b"")
        self._plane.drop(self._inbox)


def mailbox_link(plane: JoinPlane, boxes: Mailboxes, rank: int, *, leader: bool) -> MailboxLink:
    """One end of rank ``rank``'s link through mailboxes: the leader's, or the rank's."""
    down, up = f"{boxes.rank(rank)}:down", f"{boxes.rank(rank)}:up"
    return MailboxLink(plane, down, up) if leader else MailboxLink(plane, up, down)


def _echo_rank(boxes: Mailboxes, rank: int, started: Barrier, transport: Transport) -> None:
    """A rank that answers at once with a zero partial sum for its one shard (its own
    number): each PARAMS, and in a pair the REPLICA and then every SUMS (which starts the next
    round). Over links it joins once every rank has started (the ``started`` barrier), as the
    idle workers' rank tasks join within moments of each other: processes spawned one by one
    on a busy machine start too far apart for the leader, which would go on without the late
    ones. Through mailboxes it needs no joining."""
    plane = join_plane(DATA_PLANE_URL)
    started.wait(60)
    link: Link
    if transport == "redis":
        owned, link = [rank], mailbox_link(plane, boxes, rank, leader=False)
    else:
        join(plane, boxes, rank)
        assignment = await_assignment(plane, boxes, rank, 30.0)
        assert assignment is not None
        owned, link = assignment
    partial = np.zeros(PARAMS_COUNT, dtype=np.float32)
    try:
        message = decode(link.receive(30.0))
        while True:
            round_ = message.round + 1 if message.kind == SUMS else message.round
            message = decode(link.exchange(
                encode(GRADS, round=round_, rank=rank, shards=owned, losses=[0.0],
                       nodes=[(owned[0], owned[0] + 1)], buffers=[partial]), 30.0))
    except LinkClosed:
        return



def shardtrain_rounds(ranks: int, rounds: int, transport: Transport) -> dict[str, float]:
    """Rounds over links, with shared slots or TCP alone (the design), or through Redis
    mailboxes (what it replaced)."""
    boxes = Mailboxes(uuid.uuid4().hex, 1)
    context = multiprocessing.get_context("spawn")
    started = context.Barrier(ranks - 1)
    children = [context.Process(target=_echo_rank, args=(boxes, rank, started, transport))
                for rank in range(1, ranks)]
    for child in children:
        child.start()
    plane = join_plane(DATA_PLANE_URL)
    params = np.random.default_rng(0).random(PARAMS_COUNT, dtype=np.float32)
    if transport == "redis":
        team = Team({rank: [rank] for rank in range(1, ranks)},
                    {rank: mailbox_link(plane, boxes, rank, leader=True)
                     for rank in range(1, ranks)})
    else:
        team = gather_ranks(plane, boxes, ranks - 1, ranks, 60.0, "127.0.0.1", 30.0,
                            shared_dir=Settings().shared_memory_dir if transport == "shared"
                            else None, slot_bytes=slot_bytes_for(params.nbytes))
    remote = RemoteRanks(team, ranks, params, 30.0, local_sgd=False)
    remote_nodes = [(rank, rank + 1) for rank in range(1, ranks)]
    optimizers = [SGD(PARAMS_COUNT, np.dtype(np.float32))]  # no state to replicate
    own = {(0, 1): np.zeros(PARAMS_COUNT, dtype=np.float32)}
    times = []
    for step in range(rounds + 20):
        start = time.perf_counter()
        remote.begin(step, params, optimizers)
        remote.share(own)
        for node in remote_nodes:
            remote.await_node(node)
        times.append(time.perf_counter() - start)
    remote.close()
    for child in children:
        child.join(10)
    return percentiles(times[20:])


# --- the Celery chord ----------------------------------------------------------------------

chord_app = Celery("bench-chord", broker=CHORD_BROKER_URL, backend=CHORD_BROKER_URL)
chord_app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                      worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)
_store = redis.Redis.from_url(DATA_PLANE_URL)


@chord_app.task(name="bench.rank_step")
def rank_step(key: str, rank: int) -> str:
    # Replies are bytes: the client does not decode them (no decode_responses).
    params = np.frombuffer(cast("bytes | None", _store.get(f"{key}:params")) or b"",
                           dtype=np.float32)
    _store.set(f"{key}:grad{rank}", params.tobytes())
    return f"{key}:grad{rank}"


@chord_app.task(name="bench.reduce_step")
def reduce_step(keys: list[str]) -> float:
    total = np.zeros(PARAMS_COUNT, dtype=np.float32)
    for payload in cast("list[bytes | None]", _store.mget(keys)):
        total += np.frombuffer(payload or b"", dtype=np.float32)
    return float(total[0])


def chord_rounds(ranks: int, rounds: int) -> dict[str, float]:
    redis.Redis.from_url(CHORD_BROKER_URL).flushdb()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.sync:chord_app", "worker",
         f"--concurrency={ranks}", "--loglevel=WARNING", "-n", f"chord{uuid.uuid4().hex[:6]}@%h"],
        # Its banner goes to stderr, not into the report on stdout.
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    try:
        deadline = time.monotonic() + 60
        while not chord_app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("the chord benchmark's Celery worker did not start")
        params = np.random.default_rng(0).random(PARAMS_COUNT, dtype=np.float32).tobytes()
        times = []
        for step in range(rounds + 10):
            key = f"bench:{step}"
            start = time.perf_counter()
            _store.set(f"{key}:params", params)
            chord(rank_step.s(key, rank) for rank in range(ranks))(reduce_step.s()).get(
                timeout=30)
            times.append(time.perf_counter() - start)
        return percentiles(times[10:])
    finally:
        worker.terminate()
        worker.wait(30)
        _store.flushdb()


def sync_results(quick: bool) -> list[dict[str, Any]]:
    rounds = 100 if quick else 500
    results = []
    for ranks in (2, 4):
        ours = shardtrain_rounds(ranks, rounds, "shared")
        tcp = shardtrain_rounds(ranks, rounds, "tcp")
        mailboxes = shardtrain_rounds(ranks, rounds, "redis")
        peer = chord_rounds(ranks, max(rounds // 5, 20))
        print(f"sync {ranks} ranks, 400 KB: shardtrain's links {ours['median_ms']:.3f} ms "
              f"(p95 {ours['p95_ms']:.3f}) through shared memory, {tcp['median_ms']:.3f} ms "
              f"(p95 {tcp['p95_ms']:.3f}) over TCP alone; through Redis mailboxes "
              f"{mailboxes['median_ms']:.3f} ms (p95 {mailboxes['p95_ms']:.3f}); Celery chord "
              f"{peer['median_ms']:.2f} ms (p95 {peer['p95_ms']:.2f})", flush=True)
        results.append({
            "config": f"sync-{ranks}-ranks-400KB", "threads": 1, "metric": "round_ms",
            "better": "lower", "ours": ours["median_ms"],
            "peers": {"celery_chord": peer["median_ms"], "gloo_allreduce_peers_md": 0.75},
            "extra": {"ours_p95_ms": ours["p95_ms"], "chord_p95_ms": peer["p95_ms"],
                      "tcp_links_ms": tcp["median_ms"], "tcp_links_p95_ms": tcp["p95_ms"],
                      "redis_mailboxes_ms": mailboxes["median_ms"],
                      "redis_mailboxes_p95_ms": mailboxes["p95_ms"], "rounds": rounds,
                      "ratio_chord_over_ours": peer["median_ms"] / ours["median_ms"]}})
    return results
