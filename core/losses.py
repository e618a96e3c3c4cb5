"""Losses as sums over rows, and the error signal they send into the output layer.

Every function works on a batch's rows and returns or writes the *sum* over rows, never the
mean: a shard's gradient is then exact to add to the other shards', and the leader divides once
by the global row count (SPEC section 4.2). ``out`` is the output activation (n, k), ``y`` the
encoded target (n, k), ``tmp`` and ``tmp2`` scratch of the same shape, ``row`` scratch (n, 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from core.activations import sigmoid_grad

LossValue = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]
OutputDelta = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


@functools.cache
def _clip_bounds(dtype: np.dtype) -> tuple[float, float]:
    eps = float(np.finfo(dtype).eps)
    return eps, 1.0 - eps


def mse(out: np.ndarray, y: np.ndarray, tmp: np.ndarray, tmp2: np.ndarray) -> float:
    np.subtract(out, y, out=tmp)
    return float(np.vdot(tmp, tmp))


def cross_entropy(out: np.ndarray, y: np.ndarray, tmp: np.ndarray, tmp2: np.ndarray) -> float:
    low, _ = _clip_bounds(out.dtype)
    np.maximum(out, low, out=tmp)
    np.log(tmp, out=tmp)
    return -float(np.vdot(tmp, y))


def binary_cross_entropy(out: np.ndarray, y: np.ndarray, tmp: np.ndarray,
                         tmp2: np.ndarray) -> float:
    # -(y log p + (1 - y) log(1 - p)) summed as -(log(1-p) + y (log p - log(1-p))).
    low, high = _clip_bounds(out.dtype)
    np.clip(out, low, high, out=tmp)
    log_not = np.subtract(1.0, tmp, out=tmp2)
    np.log(log_not, out=log_not)
    np.log(tmp, out=tmp)
    tmp -= log_not
    return -(float(np.vdot(tmp, y)) + float(log_not.sum()))


LOSS_VALUES: dict[str, LossValue] = {
    "mse": mse,
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
}


def fused_delta(out: np.ndarray, y: np.ndarray, delta: np.ndarray,
                tmp: np.ndarray, row: np.ndarray) -> None:
    """Softmax with cross-entropy and sigmoid with binary cross-entropy: the output's Jacobian
    cancels the loss's division by p, leaving ``p - y``; cheaper and free of 0/0 near p=0."""
    np.subtract(out, y, out=delta)


def mse_linear_delta(out: np.ndarray, y: np.ndarray, delta: np.ndarray,
                     tmp: np.ndarray, row: np.ndarray) -> None:
    np.subtract(out, y, out=delta)
    delta *= 2.0


def mse_sigmoid_delta(out: np.ndarray, y: np.ndarray, delta: np.ndarray,
                      tmp: np.ndarray, row: np.ndarray) -> None:
    mse_linear_delta(out, y, delta, tmp, row)
    sigmoid_grad(out, delta, tmp, tmp)


def mse_softmax_delta(out: np.ndarray, y: np.ndarray, delta: np.ndarray,
                      tmp: np.ndarray, row: np.ndarray) -> None:
    # Softmax Jacobian-vector product: dz_j = p_j * (g_j - sum_k g_k p_k).
    mse_linear_delta(out, y, delta, tmp, row)
    np.multiply(delta, out, out=tmp)
    np.sum(tmp, axis=1, keepdims=True, out=row)
    delta -= row
    delta *= out


OUTPUT_DELTAS: dict[tuple[str, str], OutputDelta] = {
    ("softmax", "cross_entropy"): fused_delta,
    ("sigmoid", "binary_cross_entropy"): fused_delta,
    ("linear", "mse"): mse_linear_delta,
    ("sigmoid", "mse"): mse_sigmoid_delta,
    ("softmax", "mse"): mse_softmax_delta,
}
