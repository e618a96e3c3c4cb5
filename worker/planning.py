"""How many ranks a job asks for: the spec's cap, and a cost model.

More ranks divide a step's compute but add a synchronisation round per step, so a small job
runs faster on one. The constants are this class of machine's, as bench/ measures them; the
choice only changes how fast a job runs, never its result (SPEC section 4.3).
"""

from __future__ import annotations

from core.network import layer_flops

GEMM_FLOP_PER_S = 100e9  # float32 GEMM on one BLAS thread (PEERS.md: about 128 GFLOP/s)
ROUND_LATENCY_S = 0.1e-3  # fixed cost of one exchange with a rank over its TCP link
# Raw bytes over a rank's link on one host (bench/sync.py: 800 KB a round in about 0.3 ms);
# across a 1 Gb/s network they move about 15 times slower, where fewer ranks pay off.
PAYLOAD_BYTES_PER_S = 2.5e9


def step_seconds(sizes: tuple[int, ...], batch_size: int, ranks: int, param_bytes: int, *,
                 sync_every: int = 1, shards: int = 1, shard_state_bytes: int = 0) -> float:
    """Estimated wall time of one step: the compute divided, plus a synchronisation round
    every ``sync_every`` steps, in which the leader sends each other rank the parameters (and
    with local SGD the optimizer states of its shards, ``shard_state_bytes`` each) and
    receives as much back."""
    compute = layer_flops(sizes) * batch_size / GEMM_FLOP_PER_S / ranks
    if ranks == 1:
        return compute
    per_rank = 2 * (param_bytes + -(-shards // ranks) * shard_state_bytes)
    return compute + (ROUND_LATENCY_S + (ranks - 1) * per_rank / PAYLOAD_BYTES_PER_S) / sync_every


def choose_ranks(*, sizes: tuple[int, ...], batch_size: int, param_bytes: int, limit: int,
                 sync_every: int = 1, shards: int = 1, shard_state_bytes: int = 0) -> int:
    """The rank count in 1..limit with the lowest estimated step time."""
    return min(range(1, max(limit, 1) + 1),
               key=lambda p: step_seconds(sizes, batch_size, p, param_bytes,
                                          sync_every=sync_every, shards=shards,
                                          shard_state_bytes=shard_state_bytes))
