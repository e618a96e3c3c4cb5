"""Summing per-shard vectors in one fixed order, whoever computes which part.

Floating-point addition is not associative, so bit-identical results across worker counts need
one summation order that depends on the shard count alone. That order is a fixed binary tree
over shard indices: node ``[lo, hi)`` is ``node[lo, mid) + node[mid, hi)`` with
``mid = (lo + hi) // 2``. A rank holding every shard below a node sends that node's sum instead
of its leaves, so ranks with contiguous shards send one vector each, and the leader completes
the same tree from the nodes it receives.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

import numpy as np

Node = tuple[int, int]
Leaf = Callable[[int, np.ndarray], None]  # writes shard i's vector into the given buffer


class Nodes(Protocol):
    """Tree nodes summed elsewhere, which ``tree_sum`` uses as they are."""

    def __contains__(self, node: object) -> bool: ...

    def await_node(self, node: Node) -> np.ndarray:
        """The sum of ``node`` (flat, like the leaves); waits for it when another rank
        computes it."""
        ...


class Summed(dict[Node, np.ndarray]):
    """Nodes summed already, by node: ``await_node`` never waits."""

    def await_node(self, node: Node) -> np.ndarray:
        return self[node]


def spare_buffers(shards: int, like: np.ndarray) -> list[np.ndarray]:
    """Scratch enough for ``tree_sum`` over ``shards`` leaves: one per tree level."""
    return [np.empty_like(like) for _ in range(max(shards - 1, 0).bit_length())]


def tree_sum(lo: int, hi: int, leaf: Leaf, out: np.ndarray, spare: list[np.ndarray],
             known: Nodes | None = None) -> None:
    """``out`` = the sum of leaves ``lo..hi-1`` in the fixed tree order.

    Nodes in ``known`` (sums computed elsewhere, in the same order) are used as they are;
    ``known.await_node`` may wait for a node that another rank sends.
    """
    if known and (lo, hi) in known:
        value = known.await_node((lo, hi))
        if value is not out:  # a node summed into ``out`` already, by ``sum_nodes``
            out[...] = value
        return
    if hi - lo == 1:
        leaf(lo, out)
        return
    mid = (lo + hi) // 2
    if known and (lo, mid) in known and (mid, hi) in known:
        # Both halves summed already: added in one pass, not copied into ``out`` first.
        np.add(known.await_node((lo, mid)), known.await_node((mid, hi)), out=out)
        return
    tree_sum(lo, mid, leaf, out, spare, known)
    if known and (mid, hi) in known:
        out += known.await_node((mid, hi))  # added as it came, without a copy first
        return
    right, rest = spare[0], spare[1:]
    tree_sum(mid, hi, leaf, right, rest, known)
    out += right


def sum_nodes(nodes: Sequence[Node], leaf: Leaf, outs: Sequence[np.ndarray],
              spare: list[np.ndarray]) -> Summed:
    """Each of ``nodes`` summed from its leaves into the buffer of ``outs`` at its place (a
    pool at least as long): the partial sums one rank computes, as ``known`` nodes for
    ``tree_sum``."""
    if len(outs) < len(nodes):
        raise ValueError(f"{len(nodes)} nodes need as many buffers, not {len(outs)}")
    for (lo, hi), out in zip(nodes, outs, strict=False):
        tree_sum(lo, hi, leaf, out, spare)
    return Summed(zip(nodes, outs, strict=False))


class Merged:
    """The nodes of several sources (``Nodes``), each asked in turn: the nodes a rank summed
    itself beside those that others send."""

    def __init__(self, *sources: Nodes) -> None:
        self._sources = sources

    def __contains__(self, node: object) -> bool:
        return any(node in source for source in self._sources)

    def await_node(self, node: Node) -> np.ndarray:
        for source in self._sources:
            if node in source:
                return source.await_node(node)
        raise KeyError(node)


def covering_nodes(lo: int, hi: int, owned: Collection[int]) -> list[Node]:
    """The largest tree nodes within ``[lo, hi)`` whose leaves are all in ``owned``."""
    inside = sum(1 for s in owned if lo <= s < hi)
    if inside == hi - lo:
        return [(lo, hi)]
    if inside == 0 or hi - lo == 1:
        return []
    mid = (lo + hi) // 2
    return covering_nodes(lo, mid, owned) + covering_nodes(mid, hi, owned)
