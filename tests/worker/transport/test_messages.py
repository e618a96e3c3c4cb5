"""The step messages: every field round-trips, and the vectors come back aligned."""

from __future__ import annotations

import numpy as np

from worker.transport.messages import GRADS, decode, encode


def test_a_message_round_trips_with_its_vectors_aligned_to_8_bytes() -> None:
    vectors: list[np.ndarray] = [np.arange(5, dtype=np.float32), np.arange(3, dtype=np.float64)]
    parts = encode(GRADS, round=7, step=41, rank=2, shards=[2, 3], losses=[[0.5], [0.25]],
                   nodes=[(2, 4)], text="é", buffers=vectors)
    payload = b"".join(parts)
    message = decode(payload)
    assert (message.kind, message.round, message.step, message.rank) == (GRADS, 7, 41, 2)
    assert message.shards.tolist() == [2, 3]
    assert message.losses.tolist() == [0.5, 0.25]
    assert message.nodes.tolist() == [[2, 4]]
    assert message.text == "é"
    assert np.array_equal(message.vectors(np.dtype(np.float32), 1)[0], vectors[0])
    assert np.array_equal(np.frombuffer(message.buffers[1], np.float64), vectors[1])
    # Whatever the header holds, the first vector starts 8-aligned within the payload.
    first = len(parts[0])
    assert first % 8 == 0 and bytes(message.buffers[0]) == payload[first:first + 20]
