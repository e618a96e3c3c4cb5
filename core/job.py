"""A job's data prepared once, and the per-shard gradient computation every rank runs.

``JobData`` fixes everything SPEC section 4 derives from the spec and the dataset: the split
(``core.splits``), the batch plan, and the rows this process holds (``core.rows``). ``ShardSet``
is the data plane's unit of work: the gradients of some of the job's shards at a given step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from core.backprop import Workspace
from core.data import DataShape, InvalidDataError, TargetEncoding
from core.network import Network
from core.optimizers import Optimizer, gradient_scale
from core.rows import ArrayRows, Block, HeldRows, RowSource
from core.spec import TrainSpec
from core.splits import StepPlan, holdout, n_train, n_validation, shard_bounds, shard_order

EVAL_CHUNK = 4096
MAX_CACHED_VIEWS = 16


@dataclass(frozen=True)
class JobData:
    spec: TrainSpec
    shape: DataShape
    net: Network
    encoding: TargetEncoding
    rows: HeldRows  # the rows this process holds, fetched as they are needed
    bounds: np.ndarray  # (shards + 1,) shard s owns training positions bounds[s]:bounds[s+1]
    plan: StepPlan
    seeded: tuple[np.ndarray, np.ndarray] | None  # the ``seeded`` split's (train, val) rows

    @classmethod
    def build(cls, spec: TrainSpec, shape: DataShape, source: RowSource) -> JobData:
        """The job of ``spec`` on the dataset ``shape`` describes, reading rows from
        ``source`` as they are needed. Raises InvalidDataError when they cannot train it."""
        shape.check_dtype(spec.dtype)
        encoding = TargetEncoding.describe(shape, spec.model.output, spec.loss)
        net = Network.from_spec(spec, shape.n_features, encoding.n_out)
        train = n_train(shape.n_rows, spec.validation_fraction)
        if train < spec.shards:
            raise InvalidDataError(
                f"{train} training rows after the validation hold-out cannot fill "
                f"{spec.shards} shards")
        seeded = (holdout(shape.n_rows, spec.validation_fraction, spec.seed)
                  if shape.split == "seeded" else None)
        return cls(spec=spec, shape=shape, net=net, encoding=encoding,
                   rows=HeldRows(source, encoding, np.dtype(spec.dtype)),
                   bounds=shard_bounds(train, spec.shards),
                   plan=StepPlan.build(train, spec.batch_size, spec.shards), seeded=seeded)

    @classmethod
    def prepare(cls, spec: TrainSpec, X: np.ndarray, y: np.ndarray) -> JobData:
        """The job on ``(X, y)`` in memory, split as the service splits an upload of them."""
        source = ArrayRows(X, y)
        return cls.build(spec, source.shape, source)

    @property
    def n_train(self) -> int:
        return int(self.bounds[-1])

    def shard_block(self, shard: int) -> tuple[Block, np.ndarray]:
        """A held block with every row of ``shard``, and those rows' positions in it (fetched
        if no block held them)."""
        lo, hi = int(self.bounds[shard]), int(self.bounds[shard + 1])
        if self.seeded is None:
            block = self.rows.block(lo, hi)
            return block, np.arange(lo - block.start, hi - block.start)
        block = self.rows.block(0, self.shape.n_rows)  # the seeded split reads every row
        return block, self.seeded[0][lo:hi]

    def hold(self, shards: Iterable[int]) -> None:
        """Fetch the rows of ``shards`` (a contiguous run, as ranks are given) at once."""
        owned = sorted(shards)
        if owned and self.seeded is None:
            self.rows.block(int(self.bounds[owned[0]]), int(self.bounds[owned[-1] + 1]))

    @property
    def has_validation(self) -> bool:
        return n_validation(self.shape.n_rows, self.spec.validation_fraction) > 0

    def validation_block(self) -> tuple[Block, np.ndarray]:
        """A held block with the hold-out, and its rows' positions in it."""
        if self.seeded is None:
            block = self.rows.block(self.n_train, self.shape.n_rows)
            return block, np.arange(self.n_train - block.start, self.shape.n_rows - block.start)
        return self.rows.block(0, self.shape.n_rows), self.seeded[1]

    @cached_property
    def gradient_scale(self) -> float:
        """The optimizer's factor that every shard folds into its gradients."""
        return gradient_scale(self.spec.optimizer)

    @cached_property
    def decay(self) -> np.ndarray | None:
        """L2's gradient per unit of parameter (weights only, not biases), folded like the
        shards' gradients; None without L2."""
        if self.spec.l2 <= 0:
            return None
        return self.net.weight_mask() * (self.spec.l2 * self.gradient_scale)

    def descend(self, optimizer: Optimizer, params: np.ndarray, grad: np.ndarray,
                scratch: np.ndarray) -> None:
        """One update of ``params`` by ``optimizer`` from ``grad``, a gradient folded as the
        shards fold theirs: L2 decay is added to it first (``grad`` is overwritten)."""
        if self.decay is not None:
            grad += np.multiply(params, self.decay, out=scratch)
        optimizer.step(params, grad)

    @cached_property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.spec.epochs * self.plan.steps_per_epoch

    @cached_property
    def _batch_rows(self) -> list[int]:
        return self.plan.shares.sum(axis=1).tolist()

    def step_rows(self, step: int) -> int:
        """Rows in the global batch of (0-based) ``step``."""
        return int(self._batch_rows[step % self.steps_per_epoch])

    def shard_rows(self, shard: int) -> int:
        return int(self.bounds[shard + 1] - self.bounds[shard])

    def evaluate(self, params: np.ndarray) -> tuple[float, float | None]:
        """(mean loss, accuracy or None for regression) of ``params`` on the hold-out."""
        block, rows = self.validation_block()
        if len(rows) == 0:
            return float("nan"), None
        ws = Workspace(self.net, min(EVAL_CHUNK, len(rows)))
        cast = Cast(block.X.dtype, ws)
        weights, biases = self.net.views(params)
        loss, correct = 0.0, 0
        for start in range(0, len(rows), ws.capacity):
            chunk = rows[start:start + ws.capacity]
            n = len(chunk)
            cast.take(block.X, chunk)
            np.take(block.Y, chunk, axis=0, out=ws.targets[:n], mode="clip")
            out = ws.forward(weights, biases, n)
            loss += ws.loss_sum(n)
            if self.encoding.classes is not None:
                predicted = self.encoding.predict_index(out)
                truth = (ws.targets[:n, 0] > 0.5 if self.encoding.n_out == 1
                         else np.argmax(ws.targets[:n], axis=1))
                correct += int(np.count_nonzero(predicted == truth))
        accuracy = correct / len(rows) if self.encoding.classes is not None else None
        return loss / len(rows), accuracy


class Cast:
    """Takes rows of X, as stored, into a workspace's inputs in the job's dtype: directly when
    the dtypes agree, else through a buffer of the stored dtype (made once)."""

    def __init__(self, stored: np.dtype, ws: Workspace) -> None:
        self.ws = ws
        self.raw = (None if stored == ws.inputs.dtype
                    else np.empty(ws.inputs.shape, dtype=stored))

    def take(self, X: np.ndarray, rows: np.ndarray) -> None:
        n, inputs = len(rows), self.ws.inputs
        if self.raw is None:
            X.take(rows, axis=0, out=inputs[:n], mode="clip")
        else:
            X.take(rows, axis=0, out=self.raw[:n], mode="clip")
            inputs[:n] = self.raw[:n]


class ShardSet:
    """Computes the gradients of the shards ``shard_ids`` of one job.

    Each shard visits its own rows in its own seeded order, so a shard's gradient at a step is
    the same whichever process computes it and whatever other shards that process holds.
    """

    def __init__(self, job: JobData, shard_ids: Iterable[int]) -> None:
        self.job = job
        self.shard_ids = list(shard_ids)
        capacity = int(job.plan.shares[:, self.shard_ids].max()) if self.shard_ids else 1
        self.workspace = Workspace(job.net, max(capacity, 1))
        self._casts: dict[np.dtype, Cast] = {}
        # Per shard: its block, and its epoch's rows (positions in the block) in visit order.
        self._blocks: dict[int, tuple[Block, np.ndarray]] = {}
        self._orders: dict[int, tuple[int, np.ndarray]] = {}
        self._views: dict[int, tuple[np.ndarray, tuple[list[np.ndarray], list[np.ndarray]]]] = {}

    def _views_of(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The layer views of a parameter or gradient vector, made once per vector: the same
        few vectors come back every step, and building views costs more than small layers."""
        cached = self._views.get(id(flat))
        if cached is None or cached[0] is not flat:
            if len(self._views) >= MAX_CACHED_VIEWS:  # a caller cycling through new vectors
                self._views.clear()
            cached = self._views[id(flat)] = (flat, self.job.net.views(flat))
        return cached[1]

    def _block(self, shard: int) -> tuple[Block, np.ndarray]:
        held = self._blocks.get(shard)
        if held is None:
            held = self._blocks[shard] = self.job.shard_block(shard)
        return held

    def _epoch_rows(self, shard: int, epoch: int) -> np.ndarray:
        cached = self._orders.get(shard)
        if cached is None or cached[0] != epoch:
            own = self._block(shard)[1]
            rows = own[shard_order(self.job.spec.seed, epoch, shard, len(own))]
            self._orders[shard] = cached = (epoch, rows)
        return cached[1]

    def gradient(self, shard: int, step: int, params: np.ndarray, out: np.ndarray,
                 scale: float) -> tuple[float, int]:
        """Write ``scale`` times the gradient of shard ``shard``'s summed loss at 0-based global
        ``step`` into ``out`` (flat, like ``params``); return (summed loss, rows used).

        With ``scale = 1 / rows of the global batch`` the shards' outputs add up, in shard
        order, to the mean gradient over the union batch (SPEC section 4.2).
        """
        job, ws = self.job, self.workspace
        epoch, within = divmod(step, job.steps_per_epoch)
        rows = int(job.plan.shares[within, shard])
        start = int(job.plan.starts[within, shard])
        batch = self._epoch_rows(shard, epoch)[start:start + rows]
        block = self._block(shard)[0]
        cast = self._casts.get(block.X.dtype)
        if cast is None:
            cast = self._casts[block.X.dtype] = Cast(block.X.dtype, ws)
        cast.take(block.X, batch)
        block.Y.take(batch, axis=0, out=ws.targets[:rows], mode="clip")
        loss = ws.gradient(*self._views_of(params), *self._views_of(out), rows, scale)
        return loss, rows
