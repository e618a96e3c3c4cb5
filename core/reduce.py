"""Summing per-shard vectors in one fixed order, whoever computes which part.

Floating-point addition is not associative, so bit-identical results across worker counts need
one summation order that depends on the shard count alone. That order is a fixed binary tree
over shard indices: node ``[lo, hi)`` is ``node[lo, mid) + node[mid, hi)`` with
``mid = (lo + hi) // 2``. A rank holding every shard below a node sends that node's sum instead
of its leaves, so ranks with contiguous shards send one vector each, and the leader completes
the same tree from the nodes it receives.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

import numpy as np

Node = tuple[int, int]
Leaf = Callable[[int, np.ndarray], None]  # writes shard i's vector into the given buffer


class Nodes(Protocol):
    """Tree nodes summed elsewhere: a plain dict, or a source that waits for other ranks."""

    def __contains__(self, node: object) -> bool: ...

    def __getitem__(self, node: Node) -> np.ndarray: ...


def spare_buffers(shards: int, like: np.ndarray) -> list[np.ndarray]:
    """Scratch enough for ``tree_sum`` over ``shards`` leaves: one per tree level."""
    return [np.empty_like(like) for _ in range(max(shards - 1, 0).bit_length())]


def tree_sum(lo: int, hi: int, leaf: Leaf, out: np.ndarray, spare: list[np.ndarray],
             known: Nodes | None = None) -> None:
    """``out`` = the sum of leaves ``lo..hi-1`` in the fixed tree order.

    Nodes in ``known`` (sums computed elsewhere, in the same order) are used as they are.
    """
    if known and (lo, hi) in known:
        out[...] = known[(lo, hi)]
        return
    if hi - lo == 1:
        leaf(lo, out)
        return
    mid = (lo + hi) // 2
    tree_sum(lo, mid, leaf, out, spare, known)
    if known and (mid, hi) in known:
        out += known[(mid, hi)]  # a rank's sum is added as it came, without a copy first
        return
    right, rest = spare[0], spare[1:]
    tree_sum(mid, hi, leaf, right, rest, known)
    out += right


def covering_nodes(lo: int, hi: int, owned: Collection[int]) -> list[Node]:
    """The largest tree nodes within ``[lo, hi)`` whose leaves are all in ``owned``."""
    inside = sum(1 for s in owned if lo <= s < hi)
    if inside == hi - lo:
        return [(lo, hi)]
    if inside == 0 or hi - lo == 1:
        return []
    mid = (lo + hi) // 2
    return covering_nodes(lo, mid, owned) + covering_nodes(mid, hi, owned)
