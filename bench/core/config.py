"""What ``bench.core`` measures: the configurations, their plans and their data files."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.spec import Activation, Loss, Output

ROOT = Path(__file__).resolve().parents[2]
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
