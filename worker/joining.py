"""Launching a leader's ranks and gathering those that join.

1. Right after its claim, the leader decides how many ranks P to ask for (``launch_ranks``):
   at most the shards, ``max_workers`` and 1 + the idle workers (``worker.presence``); with
   ``auto``, the cost model of ``worker.planning`` picks P. It sends P - 1 rank tasks.
2. Each rank sends JOIN into the leader's mailbox (``worker.transport.join_plane``), then
   loads its data.
3. Meanwhile a thread of the leader's (``Gathering``) takes the JOINs for up to
   ``rank_join_s``, closes the window, gives each joiner a contiguous block of shards and a
   ticket in its ASSIGN, and accepts their links (``worker.transport.handshake``).
4. The blocks of ranks that did not join stay with the leader. Rank tasks that start later
   find the window closed and end at once.

No worker ever waits for another: a busy cluster costs a job the join window, not a
deadlock. Without Redis (the embedded default, or a cluster without ``redis_url``) a job runs
on one rank.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.network import Network
from core.optimizers import make_optimizer, state_arrays
from core.spec import TrainSpec
from db.settings import Settings
from worker.dispatch import RankLauncher, launch_rank
from worker.planning import choose_ranks
from worker.presence import idle_workers
from worker.transport.handshake import (
    HandshakeError,
    Listener,
    Ticket,
    connect,
    decode_handshake,
    encode_handshake,
    local_address,
)
from worker.transport.join_plane import JoinPlane, Mailboxes, join_plane
from worker.transport.links import Link
from worker.transport.messages import ASSIGN, JOIN, decode, encode

log = logging.getLogger(__name__)

# Idle workers start their rank tasks within milliseconds of each other: once a rank has
# joined, this long without another means the rest are not coming soon.
JOIN_QUIET_S = 0.2


def plan_ranks(shards: int, ranks: int) -> list[list[int]]:
    """Contiguous blocks of near-equal size, rank 0 first (so the leader's come first)."""
    return [block.tolist() for block in np.array_split(np.arange(shards), ranks)]


@dataclass
class Team:
    """The ranks that joined and linked: each one's shards and link."""

    members: dict[int, list[int]]
    links: dict[int, Link]

    def close(self) -> None:
        for link in self.links.values():
            link.close()


def rank_limit(spec: TrainSpec, max_ranks: int | None, settings: Settings) -> int:
    """The most ranks this job may use: its shards and ``max_ranks`` (the spec's
    ``max_workers``; None: auto); 1 where ranks cannot join (they join through Redis) or
    cannot start (the embedded worker is one thread)."""
    if settings.redis_url is None or settings.is_embedded:
        return 1
    return min(spec.shards, max_ranks) if max_ranks is not None else spec.shards


def launch_ranks(job_id: str, attempt: int, spec: TrainSpec, net: Network,
                 max_ranks: int | None, settings: Settings,
                 launch: RankLauncher | None = None) -> int:
    """Send the tasks of ranks 1..P-1 of this attempt and return P, the leader included:
    ``max_ranks`` if given, else what the cost model chooses, and no more than can start."""
    wanted = rank_limit(spec, max_ranks, settings)
    if max_ranks is None:
        state_bytes = 0
        if spec.sync_every > 1:  # a local SGD round also carries each shard's optimizer state
            optimizer = make_optimizer(spec.optimizer, net.n_params, net.dtype)
            state_bytes = sum(a.nbytes for a in state_arrays(optimizer))
        wanted = choose_ranks(sizes=net.sizes, batch_size=spec.batch_size,
                              param_bytes=net.param_bytes, limit=wanted,
                              sync_every=spec.sync_every, shards=spec.shards,
                              shard_state_bytes=state_bytes)
    if wanted > 1:
        idle = idle_workers()
        if idle is not None:
            wanted = min(wanted, 1 + idle)
    for rank in range(1, wanted):
        (launch or launch_rank)(job_id, attempt, rank)
    return wanted


def slot_bytes_for(param_bytes: int) -> int:
    """Shared slots that hold a step's message: the parameters, or one or two partial sums,
    and the header. Larger ones (a replica with Adam's moments, local SGD's optimizer states)
    travel over TCP."""
    return 2 * param_bytes + (1 << 16)


def gather_ranks(plane: JoinPlane, boxes: Mailboxes, wanted: int, shards: int, window: float,
                 listen_on: str, timeout: float, *, shared_dir: Path | None = None,
                 slot_bytes: int = 0) -> Team:
    """The ranks among 1..``wanted`` that join within ``window`` s and link within
    ``timeout`` s, each with its block of ``shards``. ``listen_on``: the address the links
    are accepted on; ``shared_dir``: where the ranks on this host share slots of
    ``slot_bytes`` (``worker.transport.slots``)."""
    deadline = last_join = time.monotonic() + window
    joined: set[int] = set()
    while len(joined) < wanted:
        left = deadline - time.monotonic()
        if joined:
            left = min(left, last_join + JOIN_QUIET_S - time.monotonic())
        if left <= 0:
            break
        payload = plane.receive(boxes.leader, left)
        if payload is not None and (message := decode(payload)).kind == JOIN:
            joined.add(message.rank)
            last_join = time.monotonic()
    plane.mark(boxes.joining_closed)
    blocks = plan_ranks(shards, 1 + len(joined))
    members = {rank: blocks[i] for i, rank in enumerate(sorted(joined), start=1)}
    if not members:
        return Team({}, {})
    listener = Listener(listen_on, shared_dir, slot_bytes)
    ticket = encode_handshake(listener.ticket).decode()
    for rank, owned in members.items():
        plane.send(boxes.rank(rank),
                   b"".join(encode(ASSIGN, rank=rank, shards=owned, text=ticket)))
    try:
        links: dict[int, Link] = dict(listener.accept(set(members), timeout))
    finally:
        listener.close()
    return Team({rank: members[rank] for rank in links}, links)


def join(plane: JoinPlane, boxes: Mailboxes, rank: int) -> None:
    """Tell the leader of ``boxes`` that ``rank`` has started."""
    plane.send(boxes.leader, b"".join(encode(JOIN, rank=rank)))


def await_assignment(plane: JoinPlane, boxes: Mailboxes, rank: int,
                     timeout: float) -> tuple[list[int], Link] | None:
    """This rank's shards and its link to the leader, or None when the leader runs without
    it (it joined too late, or the leader is gone)."""
    payload = plane.receive(boxes.rank(rank), timeout)
    if payload is None or (assigned := decode(payload)).kind != ASSIGN:
        return None
    owned = assigned.shards.tolist()
    try:
        ticket = decode_handshake(Ticket, assigned.text)
    except HandshakeError:
        log.warning("rank %d of job %s was assigned no ticket it can read", rank, boxes.job_id)
        return None
    try:
        return owned, connect(ticket, rank, timeout)
    except OSError:
        log.warning("rank %d of job %s could not reach its leader at %s", rank, boxes.job_id,
                    ticket.address)
        return None


class Gathering:
    """``gather_ranks`` for an attempt that wants ``wanted`` ranks, on a thread of its own,
    so that the ranks join and link while the leader loads its data. Leaving the block closes
    the links of a team never taken (a leader that ends before training lets its ranks go)."""

    def __init__(self, job_id: str, attempt: int, wanted: int, spec: TrainSpec,
                 net: Network, settings: Settings, plane: JoinPlane | None = None) -> None:
        self._job_id, self._wanted = job_id, wanted
        self._team: Future[Team] | None = None
        self._taken = False
        if wanted == 1:
            return
        if plane is None:
            assert settings.redis_url is not None, "ranks join through Redis"
            plane = join_plane(settings.redis_url)
        pool = ThreadPoolExecutor(max_workers=1,
                                  thread_name_prefix=f"shardtrain-gather-{job_id[:8]}")
        # In the job's logging context, which a new thread does not inherit.
        self._team = pool.submit(copy_context().run, _gather_team, plane, job_id, attempt,
                                 wanted, spec, net, settings)
        pool.shutdown(wait=False)  # the thread ends with its one task; ``_team`` is waited on

    def team(self) -> Team | None:
        """The ranks that joined and linked, once the gathering has ended; None when the
        leader runs alone."""
        if self._team is None:
            return None
        team = self._team.result()
        self._taken = True
        log.info("job %s: %d of %d ranks joined", self._job_id, 1 + len(team.members),
                 self._wanted)
        return team if team.members else None

    def __enter__(self) -> Gathering:
        return self

    def __exit__(self, *_: object) -> None:
        if self._team is None or self._taken:
            return
        # Not waited for: a rank that joined but never links (it could not load the data
        # that stopped this leader too) would hold the leader for rank_timeout_s.
        self._team.add_done_callback(_close_team)


def _close_team(team: Future[Team]) -> None:
    """The links of a gathering that was never taken; a failed one has none."""
    if team.exception() is None:
        team.result().close()


def _gather_team(plane: JoinPlane, job_id: str, attempt: int, wanted: int, spec: TrainSpec,
                 net: Network, settings: Settings) -> Team:
    boxes = Mailboxes(job_id, attempt)
    assert settings.redis_url is not None
    try:
        # The ranks link to the leader at its address on the way to Redis.
        return gather_ranks(plane, boxes, wanted - 1, spec.shards, settings.rank_join_s,
                            local_address(settings.redis_url), settings.rank_timeout_s,
                            shared_dir=settings.shared_memory_dir,
                            slot_bytes=slot_bytes_for(net.param_bytes))
    finally:
        plane.drop(boxes.leader)
