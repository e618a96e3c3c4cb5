"""How many ranks a job runs on: live capacity, the spec's cap, and a cost model.

More ranks divide a step's compute but add a synchronisation round per step, so a small job
runs faster on one. The constants are this class of machine's, as bench/ measures them; the
choice only changes how fast a job runs, never its result (SPEC section 4.3).
"""

from __future__ import annotations

import logging

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


def free_worker_slots(app: Celery, timeout: float = 0.5) -> int:
    """Idle task slots across the live workers, by asking them (0 if none answers)."""
    try:
        inspect = app.control.inspect(timeout=timeout)
        stats = inspect.stats() or {}
        active = inspect.active() or {}
    except Exception as exc:  # an unreachable broker means no known capacity, not a failure
        log.warning("could not ask the workers for capacity: %s", exc)
        return 0
    return sum(max(0, info.get("pool", {}).get("max-concurrency", 1) - len(active.get(name, [])))
               for name, info in stats.items())
