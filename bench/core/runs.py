"""One training run per implementation (ours, PyTorch, scikit-learn), and its measurement."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.config import N_CLASSES, SEED, WARMUP_ROWS, Work
from bench.core.data import Data

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Run:
    seconds: float  # wall time of the training loop alone
    loss: float  # mean training loss over the last epoch's batches
    predicted: np.ndarray | None  # labels predicted for data.X_test, when there is one


def run_ours(work: Work, data: Data, threads: int) -> Run:
    from core.spec import ModelSpec, OptimizerSpec, TrainSpec
    from core.training import Trainer

    spec = TrainSpec(
        model=ModelSpec(hidden=(work.hidden,), activation=work.activation, output=work.output),
        loss=work.loss, optimizer=OptimizerSpec(name="sgd", lr=work.lr), epochs=work.epochs,
        batch_size=work.batch_size, seed=SEED, validation_fraction=0.0, shards=1,
        dtype="float32")
    trainer = Trainer(spec, data.X, data.y)
    start = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - start
    predicted = None if data.X_test is None else trainer.model().predict(data.X_test).labels
    return Run(seconds, result.final_train_loss, predicted)


def torch_model_and_loss(work: Work, n_in: int, y: torch.Tensor) -> tuple[
        torch.nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]:
    """The network, the loss on a batch (a mean over its rows) and the targets it compares to."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    hidden = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}[work.activation]
    layers = [nn.Linear(n_in, work.hidden), hidden(), nn.Linear(work.hidden, N_CLASSES)]
    if work.loss == "cross_entropy":
        # cross_entropy takes logits: the softmax output is fused into the loss.
        return nn.Sequential(*layers), F.cross_entropy, y

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Summed over the outputs and averaged over rows, as ours (MSELoss's mean would also
        # divide by the 10 outputs, and so train with a 10 times smaller step).
        return F.mse_loss(out, target, reduction="sum") / out.shape[0]

    layers.append(nn.Sigmoid())
    return nn.Sequential(*layers), mse, F.one_hot(y, N_CLASSES).to(torch.float32)


def run_torch(work: Work, data: Data, threads: int) -> Run:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    X = torch.from_numpy(data.X)
    model, loss_fn, target = torch_model_and_loss(work, X.shape[1], torch.from_numpy(data.y))
    optimizer = torch.optim.SGD(model.parameters(), lr=work.lr)
    order_rng = torch.Generator().manual_seed(SEED)
    n = X.shape[0]
    start = time.perf_counter()
    for _ in range(work.epochs):
        total = 0.0
        order = torch.randperm(n, generator=order_rng)
        for i in range(0, n, work.batch_size):
            idx = order[i:i + work.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), target[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * idx.shape[0]
    seconds = time.perf_counter() - start
    predicted = None
    if data.X_test is not None:
        with torch.no_grad():
            predicted = model(torch.from_numpy(data.X_test)).argmax(dim=1).numpy()
    return Run(seconds, total / n, predicted)


def run_sklearn(work: Work, data: Data, threads: int) -> Run:
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(work.hidden,), activation=work.activation, solver="sgd",
        learning_rate_init=work.lr, batch_size=work.batch_size, max_iter=work.epochs,
        momentum=0.0, nesterovs_momentum=False, alpha=0.0, shuffle=True,
        early_stopping=False, tol=0.0, n_iter_no_change=10**9, random_state=SEED)
    # assume_finite skips fit's NaN scan of X: ours checks X when the Trainer is built, outside
    # the timed run, so the check stays out of both times.
    with sklearn.config_context(assume_finite=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(data.X, data.y)
        seconds = time.perf_counter() - start
    predicted = None if data.X_test is None else clf.predict(data.X_test)
    return Run(seconds, float(clf.loss_), predicted)


RUNNERS: dict[str, Callable[[Work, Data, int], Run]] = {
    "ours": run_ours, "torch": run_torch, "sklearn": run_sklearn}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) since it started or since the last
    :func:`reset_peak_rss`, in MiB.

    Not getrusage's ru_maxrss: Linux carries that over from the parent through fork and exec,
    so a child would report the parent's peak if that were larger; and it cannot be reset.
    """
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM line in /proc/self/status")


def reset_peak_rss() -> None:
    """Lower the peak mark to the current resident size (Linux 4.0+), so that each
    configuration a child runs reports its own peak."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def measure(impl: str, work: Work, data: Data, threads: int, repeats: int) -> dict[str, Any]:
    """One untimed warm-up on a slice of the rows, then ``repeats`` fresh runs; their median."""
    run = RUNNERS[impl]
    warm = Data(X=data.X[:WARMUP_ROWS], y=data.y[:WARMUP_ROWS], X_test=data.X_test)
    run(replace(work, epochs=1), warm, threads)
    runs = [run(work, data, threads) for _ in range(repeats)]
    last = runs[-1]
    out: dict[str, Any] = {
        "seconds": statistics.median(r.seconds for r in runs),
        "runs_s": [r.seconds for r in runs],
        "loss": last.loss,
    }
    if last.predicted is not None:
        out["accuracy"] = float(np.mean(last.predicted == data.y_test))
    return out
