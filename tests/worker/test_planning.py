"""The cost model that sizes a job: compute per step against the synchronisation it adds."""

from __future__ import annotations

from worker.planning import choose_ranks

PARAM_BYTES = 101_770 * 4  # 784-128-10 in float32


def test_a_small_job_stays_on_one_rank_and_a_large_one_spreads() -> None:
    assert choose_ranks(sizes=(64, 32, 10), batch_size=32, param_bytes=2_410 * 4, limit=4) == 1
    assert choose_ranks(sizes=(784, 128, 10), batch_size=1024, param_bytes=PARAM_BYTES,
                        limit=4) == 4
    assert choose_ranks(sizes=(784, 128, 10), batch_size=1024, param_bytes=PARAM_BYTES,
                        limit=2) == 2


def test_local_sgd_spreads_a_job_that_exact_averaging_keeps_on_one_rank() -> None:
    def ranks(sync_every: int, state_bytes: int = 0) -> int:
        return choose_ranks(sizes=(784, 128, 10), batch_size=128, param_bytes=PARAM_BYTES,
                            limit=4, sync_every=sync_every, shards=4,
                            shard_state_bytes=state_bytes)

    assert ranks(1) == 1  # a step's compute is below what a round per step costs
    assert ranks(8) == 4
    # Adam's moments travel with every round: fewer ranks pay off at the same K.
    assert ranks(8, state_bytes=2 * PARAM_BYTES) == 2
