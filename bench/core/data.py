"""The data of ``bench.core``'s configurations, written once by the parent for its children."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.config import LATENT_DIMS, N_CLASSES, N_FEATURES, SEED


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
