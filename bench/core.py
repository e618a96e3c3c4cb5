"""The numeric core against PyTorch and scikit-learn on the same work, and against the GEMM bound.

Run as ``python -m bench.core [--quick]``. Configurations (SPEC section 9, PEERS.md):

- A: 784-128-10, relu hidden, softmax + cross-entropy, SGD, batch 128, one epoch of synthetic
  rows; metric samples/s.
- B: A with a sigmoid hidden layer, a sigmoid output and MSE on one-hot targets (scikit-learn
  has no MSE classifier: its figure is null).
- C: scikit-learn's bundled digits, 64-64-10 relu softmax, batch 32, 50 epochs; metric seconds,
  with test accuracy.

Every (implementation, thread count) runs in a fresh child process
(``python -m bench.core --one IMPL THREADS --data FOLDER``) so that thread pools never carry
over. For each configuration in turn the child warms up, times a few fresh training runs and
keeps their median and its own peak memory (the mark reset between configurations); it prints
them as one JSON line. The parent writes the data once, gathers the children's lines, and prints
the report: human-readable lines, then the JSON object of SPEC section 9 as the last line.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.machine import machine_info, print_report

if TYPE_CHECKING:
    import torch

    from core.spec import Activation, Loss, Output

ROOT = Path(__file__).resolve().parent.parent
SEED = 0
THREADS = (1, 2)
CONFIGS = ("A", "B", "C")
IMPLS = ("ours", "torch", "sklearn")
PEERS = ("torch", "sklearn")
# What a child imports before it limits thread pools: threadpoolctl only sees loaded libraries.
MODULES = {"ours": "core.training", "torch": "torch", "sklearn": "sklearn.neural_network",
           "gemm": "numpy"}
N_FEATURES = 784
N_CLASSES = 10
LATENT_DIMS = 16
WARMUP_ROWS = 4096
DATA_FILES = {"A": "synthetic.npz", "B": "synthetic.npz", "C": "digits.npz"}


@dataclass(frozen=True)
class Work:
    """One configuration's network and schedule; the input and output widths come from data."""

    hidden: int
    activation: Activation
    output: Output
    loss: Loss
    batch_size: int
    epochs: int
    lr: float


WORKS = {
    "A": Work(hidden=128, activation="relu", output="softmax", loss="cross_entropy",
              batch_size=128, epochs=1, lr=0.1),
    "B": Work(hidden=128, activation="sigmoid", output="sigmoid", loss="mse",
              batch_size=128, epochs=1, lr=0.1),
    # lr 0.1 takes all three implementations past 0.97 test accuracy in 50 epochs.
    "C": Work(hidden=64, activation="relu", output="softmax", loss="cross_entropy",
              batch_size=32, epochs=50, lr=0.1),
}
UNSUPPORTED = {("sklearn", "B"): "sklearn: MLPClassifier has no MSE loss"}
NOTES = {
    "A": [f"data: seeded float32 rows x = sigmoid(z @ M) of a {LATENT_DIMS}-dim normal latent z, "
          "labels argmax((x - 0.5) @ T) for a fixed random linear teacher T (columns scaled "
          "to equal spread)"],
    "B": ["torch loss: mse_loss(reduction='sum') / rows, the squared error summed over the 10 "
          "outputs and averaged over rows, as ours (the same objective and steps)"],
    "C": ["data: sklearn load_digits, X / 16, seeded stratified 25% test hold-out"],
}


@dataclass(frozen=True)
class Plan:
    rows: int  # synthetic rows of A and B
    repeats: int  # timed runs of A and B, after one warm-up
    digits_epochs: int
    digits_repeats: int


# At least 3 timed runs: their median shrugs off one run slowed by other work on the machine.
FULL = Plan(rows=60_000, repeats=5, digits_epochs=50, digits_repeats=3)
QUICK = Plan(rows=20_000, repeats=3, digits_epochs=10, digits_repeats=3)


def plan_work(plan: Plan, config: str) -> tuple[Work, int]:
    """The configuration's work under ``plan``, and how many timed runs it gets."""
    if config == "C":
        return replace(WORKS["C"], epochs=plan.digits_epochs), plan.digits_repeats
    return WORKS[config], plan.repeats


# --- data ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Data:
    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) int64 class labels
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def synthetic(rows: int, seed: int = SEED) -> Data:
    """Inputs in (0, 1) that vary along a few latent directions, as images do, labelled by a
    fixed random linear teacher on the inputs: one epoch learns it in part (on uniform noise
    inputs the loss would stay near ln 10), and the classes are about equally frequent."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((rows, LATENT_DIMS), dtype=np.float32)
    mixing = rng.standard_normal((LATENT_DIMS, N_FEATURES), dtype=np.float32)
    X = 1.0 / (1.0 + np.exp(-2.0 / math.sqrt(LATENT_DIMS) * (latent @ mixing)))
    teacher = rng.standard_normal((N_FEATURES, N_CLASSES), dtype=np.float32)
    logits = (X - 0.5) @ teacher
    # Columns scaled to one spread, so that no class dominates.
    return Data(X=X, y=np.argmax(logits / logits.std(axis=0), axis=1))


def digits(seed: int = SEED) -> Data:
    """sklearn's bundled 8x8 digits scaled to [0, 1], with a seeded stratified 25% hold-out."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        (X / 16.0).astype(np.float32), y.astype(np.int64), test_size=0.25,
        random_state=seed, stratify=y)
    return Data(X=X_train, y=y_train, X_test=X_test, y_test=y_test)


def save_data(data: Data, path: Path) -> None:
    arrays = {k: v for k, v in vars(data).items() if v is not None}
    np.savez(path, **arrays)


def load_data(path: Path) -> Data:
    with np.load(path) as f:
        return Data(**{k: f[k] for k in f.files})


# --- one training run per implementation ---------------------------------------------------

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


# --- the GEMM bound ------------------------------------------------------------------------

def time_call(fn: Callable[[], object], blocks: int = 20, block_s: float = 0.01) -> float:
    """Seconds of one call: the fastest of ``blocks`` blocks of calls lasting ``block_s`` each.

    The fastest, not the median: a bound is what the hardware can do, and on a shared machine
    other processes only ever make a block slower. Two-thread GEMMs suffer most: while another
    process holds a core, each call waits a scheduler slice for its second thread; 20 blocks
    spread the samples over a fifth of a second per product to catch a quiet moment.
    """
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < block_s:
        fn()
        calls += 1
    best = math.inf
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def gemm_bound(sizes: tuple[int, ...], batch: int) -> dict[str, Any]:
    """Time the float32 GEMMs one SGD step of an MLP with layer ``sizes`` needs at ``batch`` rows.

    Per layer (fan_in, fan_out): the forward product, the weight gradient, and for every layer
    but the first the input gradient, each 2 * batch * fan_in * fan_out FLOP. The sum of their
    measured times is the least a step can take; ``batch_s`` is that sum.
    """
    rng = np.random.default_rng(SEED)
    batch_s, flops = 0.0, 0
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        a = rng.random((batch, fan_in), dtype=np.float32)
        w = rng.random((fan_in, fan_out), dtype=np.float32)
        delta = rng.random((batch, fan_out), dtype=np.float32)
        z, dw, da = np.empty_like(delta), np.empty_like(w), np.empty_like(a)
        # Transposed operands as backprop uses them: views, which BLAS reads without a copy.
        products = [partial(np.matmul, a, w, out=z), partial(np.matmul, a.T, delta, out=dw)]
        if layer > 0:
            products.append(partial(np.matmul, delta, w.T, out=da))
        batch_s += sum(time_call(p) for p in products)
        flops += len(products) * 2 * batch * fan_in * fan_out
    return {"batch_s": batch_s, "gflops": flops / batch_s / 1e9}


# --- the child: one implementation at one thread count ---------------------------------------

def child(impl: str, threads: int, folder: Path, plan: Plan) -> dict[str, dict[str, Any]]:
    """Each configuration's measurement by ``impl``; for ``gemm``, the bound at A's shapes."""
    importlib.import_module(MODULES[impl])
    out: dict[str, dict[str, Any]] = {}
    with threadpool_limits(limits=threads):
        if impl == "gemm":
            work = WORKS["A"]
            out["A"] = gemm_bound((N_FEATURES, work.hidden, N_CLASSES), work.batch_size)
            return out
        for config in CONFIGS:
            if (impl, config) in UNSUPPORTED:
                continue
            work, repeats = plan_work(plan, config)
            reset_peak_rss()
            out[config] = measure(impl, work, load_data(folder / DATA_FILES[config]), threads,
                                  repeats)
            out[config]["peak_rss_mb"] = peak_rss_mb()
    return out


def spawn(impl: str, threads: int, folder: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """Run :func:`child` in a fresh interpreter; on failure every configuration gets
    ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "bench.core", "--one", impl, str(threads),
           "--data", str(folder), *(["--quick"] if quick else [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        return {config: {"error": f"{impl} failed: {lines[-1]}"} for config in CONFIGS}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the parent: gather and report ---------------------------------------------------------

def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None else num / den


def describe(config: str, threads: int, impl: str, m: dict[str, Any], rows: int) -> str:
    """One human-readable line for a child's measurement."""
    head = f"{config} threads={threads} {impl:8s}"
    if "error" in m:
        return f"{head} {m['error']}"
    if impl == "gemm":
        return (f"{head} {m['gflops']:.1f} GFLOP/s at A's shapes: bound "
                f"{WORKS[config].batch_size / m['batch_s']:,.0f} samples/s")
    rate = "" if config == "C" else f" {rows / m['seconds']:>11,.0f} samples/s"
    acc = f" acc {m['accuracy']:.4f}" if "accuracy" in m else ""
    return (f"{head} {m['seconds']:8.4f} s{rate}  loss {m['loss']:.4f}{acc}"
            f"  rss {m['peak_rss_mb']:.0f} MB")


def summarize(config: str, threads: int, measured: dict[str, dict[str, Any]],
              gemm: dict[str, Any], work: Work, rows: int) -> dict[str, Any]:
    """One result object of SPEC section 9 from the children's measurements."""
    ok = {impl: m for impl, m in measured.items() if "error" not in m}
    ours = ok.get("ours", {})

    def peers(key: str) -> dict[str, Any]:
        return {p: ok.get(p, {}).get(key) for p in PEERS}

    extra: dict[str, Any] = {
        "final_loss": ours.get("loss"),
        "peer_losses": peers("loss"),
        # ours' speed-up over torch: above 1 means ours is faster, for either metric.
        "ratio_vs_torch": ratio(peers("seconds")["torch"], ours.get("seconds")),
        "peak_rss_mb": ours.get("peak_rss_mb"),
        "peer_peak_rss_mb": peers("peak_rss_mb"),
        "runs_s": ours.get("runs_s"),
        "lr": work.lr,
        "batch_size": work.batch_size,
    }
    result: dict[str, Any] = {"config": config, "threads": threads}
    if config == "C":
        result |= {"metric": "seconds", "better": "lower", "ours": ours.get("seconds"),
                   "peers": peers("seconds")}
        extra |= {"epochs": work.epochs, "test_accuracy": ours.get("accuracy"),
                  "peer_test_accuracy": peers("accuracy")}
    else:
        rate = {impl: rows / m["seconds"] for impl, m in ok.items()}
        bound = None if "error" in gemm else work.batch_size / gemm["batch_s"]
        result |= {"metric": "samples_per_s", "better": "higher", "ours": rate.get("ours"),
                   "peers": {p: rate.get(p) for p in PEERS}, "bound": bound}
        extra |= {
            "rows": rows,
            "epoch_s": ours.get("seconds"),
            "peer_epoch_s": peers("seconds"),
            "fraction_of_bound": ratio(rate.get("ours"), bound),
            "bound_epoch_s": ratio(rows, bound),
            "gemm_gflops": gemm.get("gflops"),
        }
    notes = NOTES.get(config, []) + [m["error"] for m in measured.values() if "error" in m]
    if (extra.get("fraction_of_bound") or 0.0) > 1.0:
        notes.append("ours beat the bound: the GEMM timing was disturbed (a busy machine?)")
    result["extra"] = extra | {"notes": notes}
    return result


def write_data(plan: Plan, folder: Path) -> dict[str, int]:
    """Write each data file into ``folder``; returns every configuration's training rows."""
    files = {"synthetic.npz": synthetic(plan.rows), "digits.npz": digits()}
    for name, data in files.items():
        save_data(data, folder / name)
    return {config: len(files[DATA_FILES[config]].y) for config in CONFIGS}


def run_all(quick: bool) -> None:
    plan = QUICK if quick else FULL
    machine = machine_info(("torch", "scikit-learn", "threadpoolctl"))
    print(f"bench.core {'--quick' if quick else 'full'}: {machine['cpu']}, {machine['cores']} "
          f"cores, numpy BLAS {machine['blas']}", flush=True)
    measured: dict[int, dict[str, dict[str, dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        rows = write_data(plan, Path(tmp))
        for threads in THREADS:
            measured[threads] = {}
            for impl in ("gemm", *IMPLS):
                out = spawn(impl, threads, Path(tmp), quick)
                for config, m in out.items():
                    print(describe(config, threads, impl, m, rows[config]), flush=True)
                measured[threads][impl] = out
    results = []
    for config in CONFIGS:
        work, _ = plan_work(plan, config)
        for threads in THREADS:
            by_impl = {impl: measured[threads][impl].get(config)
                       or {"error": UNSUPPORTED[impl, config]} for impl in IMPLS}
            # A and B share their layer shapes: the GEMM bound measured at A's serves both.
            gemm = measured[threads]["gemm"]["A"]
            results.append(summarize(config, threads, by_impl, gemm, work, rows[config]))
    print_report("core", machine, results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows, epochs and repeats")
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "THREADS"),
                        help="internal: measure one implementation in this process")
    parser.add_argument("--data", type=Path, help="internal: the data folder for --one")
    args = parser.parse_args(argv)
    if args.one:
        impl, threads = args.one
        out = child(impl, int(threads), args.data, QUICK if args.quick else FULL)
        print(json.dumps(out), flush=True)
    else:
        run_all(args.quick)


if __name__ == "__main__":
    main()
