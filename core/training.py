"""Training a whole job: the reference that the distributed service reproduces, bit for bit.

One step: each shard computes its gradient on its share of the global batch (``ShardSet``).
The gradients are summed over a tree fixed by the shard count (``core.reduce``), L2 decay is
added, and the optimizer steps. With ``sync_every = K > 1`` the job runs local SGD rounds
instead (``core.local_sgd``). Other ranks may compute some shards (``attach``); the result is
the same.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from core.job import JobData, ShardSet
from core.local_sgd import LocalRounds, round_end, round_weights
from core.model import Model
from core.optimizers import Optimizer, make_optimizer
from core.reduce import Leaf, Merged, spare_buffers, sum_nodes, tree_sum
from core.remote import RankLost, RemoteShards
from core.spec import TrainSpec


class DivergedError(RuntimeError):
    """The loss became NaN or Inf; the parameters are those of the last finite step."""

    def __init__(self, step: int) -> None:
        super().__init__(f"diverged at step {step}")
        self.step = step


@dataclass(frozen=True)
class StepEvent:
    step: int  # steps completed, 1-based
    epoch: int  # the epoch this step belongs to, 1-based
    train_loss: float  # mean loss over the step's global batch
    rows: int
    epoch_end: bool = False
    epoch_train_loss: float | None = None  # at epoch ends: the mean over the epoch's rows
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass(frozen=True)
class TrainResult:
    final_train_loss: float
    final_val_loss: float | None
    final_val_accuracy: float | None
    steps: int
    epochs: int
    seconds: float
    samples_per_s: float

    def to_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


class Trainer:
    """Trains ``spec`` on ``(X, y)`` in memory, as the service trains an upload of them
    (``of_job``: on a job's rows wherever they are); iterate ``steps()`` or call ``run()``."""

    def __init__(self, spec: TrainSpec, X: np.ndarray, y: np.ndarray, *,
                 init: Mapping[str, np.ndarray] | None = None,
                 submitted: Mapping[str, object] | None = None) -> None:
        """``init``: starting weights (the .npz layout); ``submitted``: the whole job spec as
        the user gave it, kept with the weights."""
        self._setup(JobData.prepare(spec, X, y), init, submitted)

    @classmethod
    def of_job(cls, job: JobData, *, init: Mapping[str, np.ndarray] | None = None,
               submitted: Mapping[str, object] | None = None) -> Trainer:
        """The trainer of ``job``, which reads its rows as it needs them."""
        trainer = cls.__new__(cls)
        trainer._setup(job, init, submitted)
        return trainer

    def _setup(self, job: JobData, init: Mapping[str, np.ndarray] | None,
               submitted: Mapping[str, object] | None) -> None:
        spec = self.spec = job.spec
        self.spec_dict = dict(submitted) if submitted is not None else spec.to_dict()
        self.job = job
        net = job.net
        self.params = (net.from_arrays(init) if init is not None
                       else net.init_params(spec.seed, spec.model.init_scheme))
        self.step = 0
        self._remote: RemoteShards | None = None  # other ranks, once attached
        self._shards = ShardSet(job, range(spec.shards))
        # Shards fold the optimizer's gradient scale into their gradients.
        self._scale = job.gradient_scale
        # The tree sum of the shards' vectors: the gradient, or the weighted replicas.
        self._sum = net.empty()
        self._scratch = net.empty()
        # With other ranks: buffers for the sums of this process's other tree nodes.
        self._node_sums: list[np.ndarray] = []
        self._spare = spare_buffers(spec.shards, self._sum)
        self._losses = [0.0] * spec.shards
        self._epoch_loss = 0.0
        self._epoch_rows = 0
        # Exact averaging keeps one optimizer; local SGD one per shard.
        self.local = spec.sync_every > 1
        n_opt = spec.shards if self.local else 1
        self.optimizers: list[Optimizer] = [
            make_optimizer(spec.optimizer, net.n_params, net.dtype) for _ in range(n_opt)]
        self._rounds = LocalRounds(self._shards) if self.local else None
        self._round_losses: deque[float] = deque()  # the round's steps not yet returned
        self._held = False  # hold_rows has run

    def attach(self, remote: RemoteShards | None) -> None:
        """Let other ranks compute the shards that ``remote`` plans for them (None: this
        process computes them all). The result is the same bits either way."""
        self._remote = remote

    def hold_rows(self) -> None:
        """Fetch the rows this process computes on now: its shards, in one read, and the
        hold-out. A shard it takes over later (a rank lost) is fetched when first needed."""
        nodes = self._remote.local_nodes if self._remote is not None else [
            (0, self.spec.shards)]
        self.job.hold(shard for lo, hi in nodes for shard in range(lo, hi))
        if self.job.has_validation:
            self.job.validation_block()
        self._held = True

    @property
    def total_steps(self) -> int:
        return self.job.total_steps

    def model(self) -> Model:
        return Model(self.job.net, self.job.encoding, self.params.copy(), self.spec_dict)

    def weights(self) -> dict[str, np.ndarray]:
        return self.job.net.to_arrays(self.params)

    def _exact_step(self, step: int, rows: int) -> float:
        losses = self._losses
        scale = self._scale / rows

        def leaf(shard: int, out: np.ndarray) -> None:
            losses[shard] = self._shards.gradient(shard, step, self.params, out, scale)[0]

        if self._remote is None:
            tree_sum(0, self.spec.shards, leaf, self._sum, self._spare)
        else:
            self._sum_with_ranks(self._remote, step, leaf)
            for shard, values in self._remote.losses().items():
                losses[shard] = values[0]
        loss = sum(losses)
        if not math.isfinite(loss):
            raise DivergedError(step + 1)
        self.job.descend(self.optimizers[0], self.params, self._sum, self._scratch)
        return loss

    def _sum_with_ranks(self, remote: RemoteShards, step: int, leaf: Leaf) -> None:
        """``_sum`` = the step's gradient: this process's tree nodes first, shared, then the
        tree completed with the other ranks' nodes (the same additions as one process)."""
        while True:
            remote.begin(step, self.params, self.optimizers)
            try:
                nodes = remote.local_nodes
                # The leader's shards come first: its first node, on the tree's left edge, is
                # summed into _sum itself, where the completion would copy it.
                first = [self._sum] if nodes and nodes[0][0] == 0 else []
                self._node_sums.extend(self.job.net.empty() for _ in
                                       range(len(nodes) - len(first) - len(self._node_sums)))
                own = sum_nodes(nodes, leaf, first + self._node_sums, self._spare)
                remote.share(own)
                # The tree sum waits for each rank's nodes where it needs them
                # (``remote.await_node``), adding what it holds while the rest travel.
                tree_sum(0, self.spec.shards, leaf, self._sum, self._spare,
                         known=Merged(own, remote))
                return
            except RankLost:
                continue  # the lost rank's shards fall to the ranks left: sum the step again

    def _local_round(self, start: int) -> list[float]:
        """Run the round that starts after ``start`` steps and synchronise; return the loss
        summed over the shards at each of its steps. On divergence the parameters and the
        optimizers stay as they were at the round's start."""
        job = self.job
        end = round_end(job, start)
        weights = round_weights(job, start, end)
        losses = np.zeros((end - start, self.spec.shards))
        saved = [{k: v.copy() for k, v in opt.state().items()} for opt in self.optimizers]

        def restore() -> None:
            for opt, state in zip(self.optimizers, saved, strict=True):
                opt.load_state(state)

        rounds = self._rounds
        assert rounds is not None

        def leaf(shard: int, out: np.ndarray) -> None:
            rounds.run(shard, start, end, self.params, self.optimizers[shard], weights[shard],
                       out, losses[:, shard])

        while True:
            if self._remote is not None:
                self._remote.begin(start, self.params, self.optimizers)
            try:
                # Waits for each rank's nodes where it needs them (``remote.await_node``).
                tree_sum(0, self.spec.shards, leaf, self._sum, self._spare, known=self._remote)
                break
            except RankLost:
                restore()  # every shard's round starts again, the lost rank's shards elsewhere
        if self._remote is not None:
            for shard, values in self._remote.losses().items():
                losses[:, shard] = values
        # In shard order, as one process adds them: the same float whoever computed them.
        totals = [sum(row) for row in losses.tolist()]
        for i, total in enumerate(totals):
            if not math.isfinite(total):
                restore()
                raise DivergedError(start + i + 1)
        self.params[...] = self._sum
        return totals

    @property
    def epoch_sums(self) -> tuple[float, int]:
        """The loss summed over the current epoch's steps so far, and their rows."""
        return self._epoch_loss, self._epoch_rows

    def resume_at(self, step: int, epoch_sums: tuple[float, int]) -> None:
        """Go on from ``step`` with ``epoch_sums`` so far (``core.checkpoint.restore``, which
        loads the parameters and the optimizers itself)."""
        self.step = step
        self._round_losses.clear()
        self._epoch_loss, self._epoch_rows = epoch_sums

    @property
    def at_sync(self) -> bool:
        """True when the training state is whole at ``step``: always with exact averaging; with
        local SGD between rounds (the parameters and optimizers are then at a round's end,
        while the steps of a round are returned one by one after it has run)."""
        return not self._round_losses

    def train_step(self) -> StepEvent:
        job, step = self.job, self.step
        if not self._held:
            self.hold_rows()
        rows = job.step_rows(step)
        epoch_end = (step + 1) % job.steps_per_epoch == 0
        # Overflow is how divergence shows; it is reported as DivergedError, not as warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            if self.local:
                if not self._round_losses:
                    self._round_losses.extend(self._local_round(step))
                loss = self._round_losses.popleft()
            else:
                loss = self._exact_step(step, rows)
        self.step = step + 1
        self._epoch_loss += loss
        self._epoch_rows += rows
        event = StepEvent(step=self.step, epoch=step // job.steps_per_epoch + 1,
                          train_loss=loss / rows, rows=rows)
        if not epoch_end:
            return event
        epoch_loss = self._epoch_loss / self._epoch_rows
        self._epoch_loss, self._epoch_rows = 0.0, 0
        val_loss, val_accuracy = (job.evaluate(self.params) if job.has_validation
                                  else (None, None))
        return StepEvent(step=event.step, epoch=event.epoch, train_loss=event.train_loss,
                         rows=rows, epoch_end=True, epoch_train_loss=epoch_loss,
                         val_loss=val_loss, val_accuracy=val_accuracy)

    def steps(self) -> Iterator[StepEvent]:
        while self.step < self.total_steps:
            yield self.train_step()

    def run(self) -> TrainResult:
        start, rows, last = time.perf_counter(), 0, None
        for event in self.steps():
            rows += event.rows
            last = event
        seconds = time.perf_counter() - start
        if last is None:
            raise RuntimeError("nothing left to train: the run had already finished")
        assert last.epoch_train_loss is not None
        return TrainResult(
            final_train_loss=last.epoch_train_loss, final_val_loss=last.val_loss,
            final_val_accuracy=last.val_accuracy, steps=self.step, epochs=last.epoch,
            seconds=seconds, samples_per_s=rows / seconds if seconds > 0 else 0.0)
