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
# how many shard ids, losses, node bounds and text bytes follow
_COUNTS = struct.Struct("<iiii")
JOIN, ASSIGN, PARAMS, GRADS = b"J", b"A", b"P", b"G"


@dataclass(frozen=True)
class Message:
    kind: bytes
    round: int
    step: int
    rank: int
    shards: np.ndarray  # int32: assigned shards (ASSIGN) or the shards whose losses follow
    losses: np.ndarray  # float64, one per shard in ``shards`` (GRADS)
    nodes: np.ndarray  # int32 (n, 2): [lo, hi) of each vector that follows (GRADS)
    text: str  # ASSIGN: where to connect and with which secret ("" in one process)
    vectors: list[np.ndarray]  # PARAMS: the parameters; GRADS: one partial sum per node


def encode(kind: bytes, *, round: int = 0, step: int = 0, rank: int = 0,
           shards: list[int] | None = None, losses: list[float] | None = None,
           nodes: list[tuple[int, int]] | None = None, text: str = "",
           vectors: list[np.ndarray] | None = None) -> list[bytes | memoryview]:
    """The message as buffers to send one after the other: the vectors are not copied."""
    shard_ids = np.asarray(shards or [], dtype=np.int32)
    loss_values = np.asarray(losses or [], dtype=np.float64)
    node_bounds = np.asarray(nodes or [], dtype=np.int32).reshape(-1, 2)
    encoded_text = text.encode()
    head = b"".join([
        _HEADER.pack(kind, round, step, rank),
        _COUNTS.pack(len(shard_ids), len(loss_values), len(node_bounds), len(encoded_text)),
        shard_ids.tobytes(), loss_values.tobytes(), node_bounds.tobytes(), encoded_text])
    return [head, *(v.data.cast("B") for v in vectors or [])]


def decode(payload: bytes | memoryview, *, dtype: np.dtype | None = None,
           size: int = 0) -> Message:
    """``dtype`` and ``size`` (elements per vector) are needed for PARAMS and GRADS only.
    The vectors are views of ``payload``, not copies."""
    kind, round_, step, rank = _HEADER.unpack_from(payload)
    offset = _HEADER.size
    n_shards, n_losses, n_nodes, n_text = _COUNTS.unpack_from(payload, offset)
    offset += _COUNTS.size
    shards = np.frombuffer(payload, np.int32, n_shards, offset)
    offset += shards.nbytes
    losses = np.frombuffer(payload, np.float64, n_losses, offset)
    offset += losses.nbytes
    nodes = np.frombuffer(payload, np.int32, 2 * n_nodes, offset).reshape(-1, 2)
    offset += nodes.nbytes
    text = bytes(payload[offset:offset + n_text]).decode()
    offset += n_text
    vectors = []
    if dtype is not None and size:
        count = (len(payload) - offset) // (np.dtype(dtype).itemsize * size)
        vectors = [np.frombuffer(payload, dtype, size, offset + i * size * np.dtype(dtype).itemsize)
                   for i in range(count)]
    return Message(bytes(kind), round_, step, rank, shards, losses, nodes, text, vectors)
