"""The messages of joining and of a step: a fixed binary header, then raw numpy buffers.

Every message names the attempt and the round it belongs to, so a late reply from before a
re-plan, or from an earlier attempt of the job, is recognised and dropped. The buffers are
sent as they lie in memory and received as views of the link's buffer: their byte lengths
travel in the header, their dtypes and shapes are the job's, which both sides know.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from core.reduce import Summed

# kind, round (int64), step (int64), sender rank (int32)
_HEADER = struct.Struct("<cqqi")
# how many shard ids, losses, node bounds, text bytes and buffers follow
_COUNTS = struct.Struct("<iiiii")
JOIN, ASSIGN, PARAMS, GRADS = b"J", b"A", b"P", b"G"
# A pair of ranks under exact averaging (worker.exchange): REPLICA sets a rank's replica of the
# parameters and the optimizer state, SUMS carries the leader's partial sums of a round.
REPLICA, SUMS = b"R", b"S"


@dataclass(frozen=True)
class Message:
    kind: bytes
    round: int
    step: int
    rank: int
    shards: np.ndarray  # int32: assigned shards (ASSIGN) or the shards whose losses follow
    losses: np.ndarray  # float64: per shard in ``shards``, per step of the round (GRADS)
    nodes: np.ndarray  # int32 (n, 2): [lo, hi) of the first n buffers (GRADS, SUMS)
    text: str  # ASSIGN: the leader's ``Ticket`` (``worker.transport.handshake``), as JSON
    buffers: list[memoryview]  # PARAMS, REPLICA: the parameters first; GRADS, SUMS: one partial
    # sum per node first; then the optimizer states: of the shards with local SGD (PARAMS,
    # GRADS), the replica's (REPLICA)

    def vectors(self, dtype: np.dtype, count: int) -> list[np.ndarray]:
        """The first ``count`` buffers as flat arrays of ``dtype`` (views, not copies)."""
        return [np.frombuffer(buffer, dtype) for buffer in self.buffers[:count]]

    def node_sums(self, dtype: np.dtype) -> Summed:
        """The partial sums of a GRADS or SUMS by their tree node ``(lo, hi)`` (views)."""
        return Summed(((int(lo), int(hi)), vector) for (lo, hi), vector in zip(
            self.nodes, self.vectors(dtype, len(self.nodes)), strict=True))


def encode(kind: bytes, *, round: int = 0, step: int = 0, rank: int = 0,
           shards: list[int] | None = None,
           losses: np.ndarray | list[float] | list[list[float]] | None = None,
           nodes: list[tuple[int, int]] | None = None, text: str = "",
           buffers: list[np.ndarray] | None = None) -> list[bytes | memoryview]:
    """The message as buffers to send one after the other: the arrays are not copied."""
    shard_ids = np.asarray(shards or [], dtype=np.int32)
    loss_values = np.asarray(losses if losses is not None else [], dtype=np.float64).ravel()
    node_bounds = np.asarray(nodes or [], dtype=np.int32).reshape(-1, 2)
    encoded_text = text.encode()
    arrays = [np.ascontiguousarray(b).data.cast("B") for b in buffers or []]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    head = b"".join([
        _HEADER.pack(kind, round, step, rank),
        _COUNTS.pack(len(shard_ids), len(loss_values), len(node_bounds), len(encoded_text),
                     len(arrays)),
        shard_ids.tobytes(), loss_values.tobytes(), node_bounds.tobytes(), encoded_text,
        lengths.tobytes()])
    return [head + bytes(_padding(len(head))), *arrays]


def _padding(offset: int) -> int:
    """Bytes that take ``offset`` to the next multiple of 8, where the buffers start: numpy
    adds vectors at an aligned address about twice as fast."""
    return -offset % 8


def decode(payload: bytes | memoryview) -> Message:
    """The buffers are views of ``payload``, not copies."""
    kind, round_, step, rank = _HEADER.unpack_from(payload)
    offset = _HEADER.size
    n_shards, n_losses, n_nodes, n_text, n_buffers = _COUNTS.unpack_from(payload, offset)
    offset += _COUNTS.size
    shards = np.frombuffer(payload, np.int32, n_shards, offset)
    offset += shards.nbytes
    losses = np.frombuffer(payload, np.float64, n_losses, offset)
    offset += losses.nbytes
    nodes = np.frombuffer(payload, np.int32, 2 * n_nodes, offset).reshape(-1, 2)
    offset += nodes.nbytes
    text = bytes(payload[offset:offset + n_text]).decode()
    offset += n_text
    lengths = np.frombuffer(payload, np.int64, n_buffers, offset)
    offset += lengths.nbytes
    offset += _padding(offset)
    view = memoryview(payload).cast("B")
    buffers = []
    for length in lengths.tolist():
        buffers.append(view[offset:offset + length])
        offset += length
    return Message(bytes(kind), round_, step, rank, shards, losses, nodes, text, buffers)
