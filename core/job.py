"""A job's data prepared once, and the per-shard gradient computation every rank runs.

``JobData`` fixes everything SPEC section 4 derives from the spec and the data; ``ShardSet`` is
the data plane's unit of work: the gradients of some of the job's shards at a given step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from core.backprop import Workspace
from core.data import (
    InvalidDataError,
    StepPlan,
    TargetEncoding,
    check_arrays,
    holdout,
    in_dtype,
    shard_bounds,
    shard_order,
)
from core.network import Network
from core.optimizers import Optimizer, gradient_scale
from core.spec import TrainSpec

EVAL_CHUNK = 4096
MAX_CACHED_VIEWS = 16

Targets = tuple[TargetEncoding, np.ndarray]
"""How ``y`` maps to the outputs, and ``y`` so encoded in the model's dtype."""


def encode_targets(spec: TrainSpec, y: np.ndarray) -> Targets:
    """The targets of ``y`` for ``spec``'s output and loss. Raises InvalidDataError."""
    encoding = TargetEncoding.fit(y, spec.model.output, spec.loss)
    return encoding, encoding.encode(y, np.dtype(spec.dtype))


@dataclass(frozen=True)
class JobData:
    spec: TrainSpec
    net: Network
    encoding: TargetEncoding
    X: np.ndarray  # (n, n_in) in the model's dtype, every row
    Y: np.ndarray  # (n, n_out) encoded targets
    train_idx: np.ndarray  # training rows, in the seeded order that shards are cut from
    val_idx: np.ndarray
    bounds: np.ndarray  # (shards + 1,) shard s owns train_idx[bounds[s]:bounds[s+1]]
    plan: StepPlan

    @classmethod
    def prepare(cls, spec: TrainSpec, X: np.ndarray, y: np.ndarray, *,
                checked: bool = False, targets: Targets | None = None) -> JobData:
        """``checked``: ``X`` and ``y`` passed ``check_arrays`` already (a worker checks a
        dataset once, when it decodes it, instead of reading every value again per job).
        ``targets``: ``encode_targets(spec, y)``, when the caller keeps them (a worker does,
        for the datasets it keeps)."""
        if not checked:
            X, y = check_arrays(X, y)
        encoding, Y = targets if targets is not None else encode_targets(spec, y)
        net = Network.from_spec(spec, X.shape[1], encoding.n_out)
        train_idx, val_idx = holdout(X.shape[0], spec.validation_fraction, spec.seed)
        if len(train_idx) < spec.shards:
            raise InvalidDataError(
                f"{len(train_idx)} training rows after the validation hold-out cannot fill "
                f"{spec.shards} shards")
        return cls(
            spec=spec, net=net, encoding=encoding,
            X=in_dtype("X", X, net.dtype), Y=Y,
            train_idx=train_idx, val_idx=val_idx,
            bounds=shard_bounds(len(train_idx), spec.shards),
            plan=StepPlan.build(len(train_idx), spec.batch_size, spec.shards),
        )

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

    def evaluate(self, params: np.ndarray, rows: np.ndarray) -> tuple[float, float | None]:
        """(mean loss, accuracy or None for regression) of ``params`` on the given rows."""
        if len(rows) == 0:
            return float("nan"), None
        ws = Workspace(self.net, min(EVAL_CHUNK, len(rows)))
        weights, biases = self.net.views(params)
        loss, correct = 0.0, 0
        for start in range(0, len(rows), ws.capacity):
            chunk = rows[start:start + ws.capacity]
            n = len(chunk)
            np.take(self.X, chunk, axis=0, out=ws.inputs[:n], mode="clip")
            np.take(self.Y, chunk, axis=0, out=ws.targets[:n], mode="clip")
            out = ws.forward(weights, biases, n)
            loss += ws.loss_sum(n)
            if self.encoding.classes is not None:
                predicted = self.encoding.predict_index(out)
                truth = (ws.targets[:n, 0] > 0.5 if self.encoding.n_out == 1
                         else np.argmax(ws.targets[:n], axis=1))
                correct += int(np.count_nonzero(predicted == truth))
        accuracy = correct / len(rows) if self.encoding.classes is not None else None
        return loss / len(rows), accuracy


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

    def _epoch_rows(self, shard: int, epoch: int) -> np.ndarray:
        cached = self._orders.get(shard)
        if cached is None or cached[0] != epoch:
            job = self.job
            own = job.train_idx[job.bounds[shard]:job.bounds[shard + 1]]
            rows = own[shard_order(job.spec.seed, epoch, shard, len(own))]
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
        job.X.take(batch, axis=0, out=ws.inputs[:rows], mode="clip")
        job.Y.take(batch, axis=0, out=ws.targets[:rows], mode="clip")
        loss = ws.gradient(*self._views_of(params), *self._views_of(out), rows, scale)
        return loss, rows
