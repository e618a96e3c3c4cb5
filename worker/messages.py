"""The data plane's messages: a fixed binary header, then raw numpy buffers.

Every message names the attempt and the round it belongs to, so a late reply from before a
re-plan, or from an earlier attempt of the job, is recognised and dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

# kind, round (int64), step (int64), sender rank (int32)
_HEADER = struct.Struct("<cqqi")
JOIN, ASSIGN, PARAMS, GRADS, STOP = b"J", b"A", b"P", b"G", b"S"


@dataclass(frozen=True)
class Message:
    kind: bytes
    round: int
    step: int
    rank: int
    shards: np.ndarray  # int32: assigned shards (ASSIGN) or the shards whose losses follow
    losses: np.ndarray  # float64, one per shard in ``shards`` (GRADS)
    nodes: np.ndarray  # int32 (n, 2): [lo, hi) of each vector that follows (GRADS)
    vectors: list[np.ndarray]  # PARAMS: the parameters; GRADS: one partial sum per node


def encode(kind: bytes, *, round: int = 0, step: int = 0, rank: int = 0,
           shards: list[int] | None = None, losses: list[float] | None = None,
           nodes: list[tuple[int, int]] | None = None,
           vectors: list[np.ndarray] | None = None) -> bytes:
    shard_ids = np.asarray(shards or [], dtype=np.int32)
    loss_values = np.asarray(losses or [], dtype=np.float64)
    node_bounds = np.asarray(nodes or [], dtype=np.int32).reshape(-1, 2)
    parts = [_HEADER.pack(kind, round, step, rank),
             struct.pack("<iii", len(shard_ids), len(loss_values), len(node_bounds)),
             shard_ids.tobytes(), loss_values.tobytes(), node_bounds.tobytes()]
    parts.extend(v.tobytes() for v in vectors or [])
    return b"".join(parts)


def decode(payload: bytes, *, dtype: np.dtype | None = None, size: int = 0) -> Message:
    """``dtype`` and ``size`` (elements per vector) are needed for PARAMS and GRADS only."""
    kind, round_, step, rank = _HEADER.unpack_from(payload)
    offset = _HEADER.size
    n_shards, n_losses, n_nodes = struct.unpack_from("<iii", payload, offset)
    offset += 12
    shards = np.frombuffer(payload, np.int32, n_shards, offset)
    offset += shards.nbytes
    losses = np.frombuffer(payload, np.float64, n_losses, offset)
    offset += losses.nbytes
    nodes = np.frombuffer(payload, np.int32, 2 * n_nodes, offset).reshape(-1, 2)
    offset += nodes.nbytes
    vectors = []
    if dtype is not None and size:
        count = (len(payload) - offset) // (np.dtype(dtype).itemsize * size)
        vectors = [np.frombuffer(payload, dtype, size, offset + i * size * np.dtype(dtype).itemsize)
                   for i in range(count)]
    return Message(kind, round_, step, rank, shards, losses, nodes, vectors)
