"""Small seeded data sets for tests."""

from __future__ import annotations

import numpy as np


def blobs(n: int = 120, features: int = 4, classes: int = 3, seed: int = 0,
          dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Separable-ish classes around random centres; labels are ints 0..classes-1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    X = centres[y] + rng.normal(size=(n, features))
    return X.astype(dtype), y


def regression(n: int = 100, features: int = 3, outputs: int = 2,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    y = np.tanh(X @ rng.normal(size=(features, outputs)))
    return X, y
