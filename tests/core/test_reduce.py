"""The fixed-order tree sum: any split of the shards over ranks gives the same bits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.reduce import Merged, Summed, covering_nodes, spare_buffers, sum_nodes, tree_sum


@settings(max_examples=200, deadline=None)
@given(shards=st.integers(1, 17), ranks=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_partial_sums_from_any_ranks_complete_to_the_same_bits(shards: int, ranks: int,
                                                                seed: int) -> None:
    rng = np.random.default_rng(seed)
    leaves = rng.normal(size=(shards, 33)).astype(np.float32) * rng.uniform(1e-3, 1e3, shards)[
        :, None].astype(np.float32)

    def leaf(i: int, out: np.ndarray) -> None:
        out[...] = leaves[i]

    whole = np.empty(33, dtype=np.float32)
    tree_sum(0, shards, leaf, whole, spare_buffers(shards, whole))

    owner = rng.integers(0, ranks, size=shards)
    owner[0] = 0  # rank 0 leads and completes the tree
    known = Summed()
    for rank in range(1, ranks):
        for lo, hi in covering_nodes(0, shards, set(np.flatnonzero(owner == rank))):
            node = np.empty(33, dtype=np.float32)
            tree_sum(lo, hi, leaf, node, spare_buffers(hi - lo, node))
            known[(lo, hi)] = node
    led = np.empty(33, dtype=np.float32)

    def own_leaf(i: int, out: np.ndarray) -> None:
        assert owner[i] == 0, "the leader computed a shard another rank sent"
        leaf(i, out)

    tree_sum(0, shards, own_leaf, led, spare_buffers(shards, led), known)
    assert np.array_equal(led, whole)

    # The leader's own nodes summed first (the first into the output itself, as a leader
    # that shares them does), then the tree completed from every node: the same bits.
    nodes = covering_nodes(0, shards, set(np.flatnonzero(owner == 0)))
    shared = np.full(33, np.nan, dtype=np.float32)
    pool = [shared, *(np.empty(33, dtype=np.float32) for _ in nodes[1:])]
    spare = spare_buffers(shards, shared)
    own = sum_nodes(nodes, own_leaf, pool, spare)
    assert own[nodes[0]] is shared

    def no_leaf(i: int, out: np.ndarray) -> None:
        raise AssertionError(f"shard {i} is in a known node")

    tree_sum(0, shards, no_leaf, shared, spare, Merged(own, known))
    assert np.array_equal(shared, whole)


def test_contiguous_ranks_send_one_node_each_when_aligned() -> None:
    assert covering_nodes(0, 8, {4, 5, 6, 7}) == [(4, 8)]
    assert covering_nodes(0, 4, {2, 3}) == [(2, 4)]
    assert covering_nodes(0, 8, {3, 4, 5}) == [(3, 4), (4, 6)]
    assert covering_nodes(0, 5, set()) == []


def test_sum_nodes_needs_a_buffer_per_node() -> None:
    with pytest.raises(ValueError, match="2 nodes need as many buffers, not 1"):
        sum_nodes([(0, 1), (1, 2)], lambda i, out: None, [np.empty(3)], [])
