"""How many ranks a job runs on: live capacity, the spec's cap, and a cost model.

More ranks divide a step's compute but add a synchronisation round per step, so a small job
runs faster on one. The constants are this class of machine's, as bench/ measures them; the
choice only changes how fast a job runs, never its result (SPEC section 4.3).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from core.network import layer_flops

log = logging.getLogger(__name__)

GEMM_FLOP_PER_S = 100e9  # float32 GEMM on one BLAS thread (PEERS.md: about 128 GFLOP/s)
ROUND_LATENCY_S = 0.5e-3  # fixed cost of one exchange with a rank through Redis
PAYLOAD_BYTES_PER_S = 1.0e9  # raw bytes through Redis from redis-py with hiredis


def step_seconds(sizes: tuple[int, ...], batch_size: int, ranks: int, param_bytes: int) -> float:
    """Estimated wall time of one step: the compute divided, plus one round per other rank
    (the leader sends the parameters to each and receives a partial sum from each)."""
    compute = layer_flops(sizes) * batch_size / GEMM_FLOP_PER_S / ranks
    if ranks == 1:
        return compute
    return compute + ROUND_LATENCY_S + (ranks - 1) * 2 * param_bytes / PAYLOAD_BYTES_PER_S


def choose_ranks(*, sizes: tuple[int, ...], batch_size: int, param_bytes: int,
                 limit: int) -> int:
    """The rank count in 1..limit with the lowest estimated step time."""
    return min(range(1, max(limit, 1) + 1),
               key=lambda p: step_seconds(sizes, batch_size, p, param_bytes))


def free_worker_slots(app: Celery, timeout: float = 0.1) -> int:
    """Idle workers, by asking them what they run (0 if none answers).

    One broadcast, answered within milliseconds by every live worker: the wait is the
    timeout, paid only by jobs the cost model would spread. A worker running nothing counts
    as one free slot, whatever its concurrency: compose runs one slot per worker, and an
    undercount only keeps a job on fewer ranks."""
    try:
        active = _ask(app, "active", timeout)
    except Exception as exc:  # an unreachable broker means no known capacity, not a failure
        log.warning("could not ask the workers for capacity: %s", exc)
        return 0
    return sum(1 for tasks in active.values() if not tasks)


def _ask(app: Celery, command: str, timeout: float) -> dict[str, Any]:
    """The workers' replies to one inspect ``command``, on a broker connection of its own.

    An inspect without a limit ends by timing out, which leaves its Redis connection with a
    BRPOP in flight on the reply queue; the replies to the next broadcast on that connection
    are then lost (kombu 5 with Redis), so a shared connection made ``active`` read as "none"
    (a busy worker counted as idle) or ``stats`` as "no workers" (a job kept to one rank)."""
    with app.connection_for_write() as connection:
        replies = getattr(app.control.inspect(timeout=timeout, connection=connection), command)()
    return replies or {}
