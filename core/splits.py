"""Which rows a job trains on, in which shard and in which order (SPEC section 4).

A dataset's rows are stored in an order of their own: ``ingest_order`` shuffles an upload once,
as it is stored, with one bucket of rows in memory at a time. A job then splits them
``contiguous``-ly: the hold-out is the last rows and each shard a contiguous range, so a rank
reads only its own rows and every job on a dataset validates on the same rows. Datasets
stored before that keep the ``seeded`` split: the job's seed picks the hold-out among all rows
(``holdout``), which reads every row.

Everything here is a pure function of the spec and the row count, so any worker computes the
same split and no placement can change the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from core.data import InvalidDataError
from core.network import STREAM_HOLDOUT, STREAM_INGEST, STREAM_INGEST_BUCKET, STREAM_SHARD_ORDER

Split = Literal["contiguous", "seeded"]

INGEST_BLOCK = 1 << 16
"""Rows whose buckets one generator draws: the buckets of a row depend on its position alone."""
INGEST_BUCKETS = 256
"""Buckets of the ingest shuffle: a stream is shuffled with 1/256 of it in memory at a time."""


def ingest_buckets(start: int, count: int) -> np.ndarray:
    """The bucket of each upload row ``start .. start + count - 1`` (uniform, seeded by its
    block of ``INGEST_BLOCK`` rows)."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    first, last = start // INGEST_BLOCK, (start + count - 1) // INGEST_BLOCK
    blocks = [np.random.default_rng([STREAM_INGEST, block]).integers(
        0, INGEST_BUCKETS, INGEST_BLOCK, dtype=np.int64) for block in range(first, last + 1)]
    offset = start - first * INGEST_BLOCK
    return np.concatenate(blocks)[offset:offset + count]


def bucket_order(bucket: int, count: int) -> np.ndarray:
    """The order the ``count`` rows of ``bucket`` (in upload order) are stored in."""
    return np.random.default_rng([STREAM_INGEST_BUCKET, bucket]).permutation(count)


def ingest_order(n: int) -> np.ndarray:
    """Row ``ingest_order(n)[i]`` of an upload of ``n`` rows is stored at position ``i``: the
    buckets one after the other, each in ``bucket_order``. A uniform shuffle that a stream of
    any length is written in with one bucket in memory (``api`` ingests that way)."""
    buckets = ingest_buckets(0, n)
    order = np.argsort(buckets, kind="stable")  # upload order within each bucket
    bounds = np.concatenate(([0], np.cumsum(np.bincount(buckets, minlength=INGEST_BUCKETS))))
    for bucket in range(INGEST_BUCKETS):
        lo, hi = int(bounds[bucket]), int(bounds[bucket + 1])
        order[lo:hi] = order[lo:hi][bucket_order(bucket, hi - lo)]
    return order


def n_validation(n: int, fraction: float) -> int:
    """Rows held out for validation: the fraction rounded, at least one when asked for any."""
    n_val = round(fraction * n)
    return 1 if fraction > 0 and n_val == 0 and n > 1 else n_val


def n_train(n: int, fraction: float) -> int:
    """Rows left to train on: with the ``contiguous`` split, rows ``0 .. n_train - 1``."""
    return n - n_validation(n, fraction)


def steps_per_epoch(n: int, fraction: float, batch_size: int) -> int:
    """Steps of an epoch on ``n`` rows, known before the data is loaded (to plan a job)."""
    return -(-n_train(n, fraction) // batch_size)


def holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``seeded`` split: (train row indices in seeded random order, validation row
    indices sorted)."""
    n_val = n_validation(n, fraction)
    order = np.random.default_rng([seed, STREAM_HOLDOUT]).permutation(n)
    return order[n_val:], np.sort(order[:n_val])


def shard_bounds(n: int, shards: int) -> np.ndarray:
    """S+1 boundaries splitting n rows into near-equal shards, the larger ones first."""
    if n < shards:
        raise InvalidDataError(f"{n} training rows cannot fill {shards} shards")
    q, r = divmod(n, shards)
    sizes = np.full(shards, q, dtype=np.int64)
    sizes[:r] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def shard_order(seed: int, epoch: int, shard: int, n: int) -> np.ndarray:
    """The order in which a shard visits its rows in an epoch: seeded by (seed, epoch, shard)
    alone, so it is the same on whichever worker computes the shard."""
    return np.random.default_rng([seed, STREAM_SHARD_ORDER, epoch, shard]).permutation(n)


@dataclass(frozen=True)
class StepPlan:
    """How many rows each shard draws at each step of an epoch.

    An epoch has ``ceil(N / B)`` steps of the global batch ``B`` (the last one shorter). At each
    step the batch is split over the shards with shares differing by at most one row; the rows
    left over by the division go to the shards in turn, continuing where the previous step
    stopped, so that over an epoch every shard draws exactly its own row count.
    """

    shares: np.ndarray  # (steps_per_epoch, shards) rows drawn
    starts: np.ndarray  # (steps_per_epoch, shards) position in the shard's epoch order

    @classmethod
    def build(cls, n_train: int, batch_size: int, shards: int) -> StepPlan:
        steps = -(-n_train // batch_size)
        batch = np.full(steps, batch_size, dtype=np.int64)
        batch[-1] = n_train - (steps - 1) * batch_size
        extra = batch % shards
        offset = (np.concatenate(([0], np.cumsum(extra)[:-1])) % shards)[:, None]
        position = (np.arange(shards)[None, :] - offset) % shards
        shares = batch[:, None] // shards + (position < extra[:, None])
        starts = np.cumsum(shares, axis=0) - shares
        return cls(shares=shares, starts=starts)

    @property
    def steps_per_epoch(self) -> int:
        return int(self.shares.shape[0])
