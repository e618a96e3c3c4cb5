"""Activations, each forward beside its derivative, both in place on preallocated buffers.

Derivatives are written against the forward *output* ``a`` (as scikit-learn does), so the
backward pass needs no copy of the pre-activation ``z``. ``tmp`` is a scratch array of the
same shape and dtype as ``a``; ``mask`` a boolean one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEAKY_SLOPE = 0.01

Forward = Callable[[np.ndarray, np.ndarray], None]
Backward = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def sigmoid(z: np.ndarray, tmp: np.ndarray) -> None:
    # The tanh form never overflows, unlike 1 / (1 + exp(-z)) for large negative z.
    z *= 0.5
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5


def sigmoid_grad(a: np.ndarray, delta: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
    np.subtract(1.0, a, out=tmp)
    tmp *= a
    delta *= tmp


def tanh(z: np.ndarray, tmp: np.ndarray) -> None:
    np.tanh(z, out=z)


def tanh_grad(a: np.ndarray, delta: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
    np.square(a, out=tmp)
    np.subtract(1.0, tmp, out=tmp)
    delta *= tmp


def relu(z: np.ndarray, tmp: np.ndarray) -> None:
    np.maximum(z, 0.0, out=z)


def relu_grad(a: np.ndarray, delta: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
    np.greater(a, 0.0, out=mask)
    np.multiply(delta, mask, out=delta)


def leaky_relu(z: np.ndarray, tmp: np.ndarray) -> None:
    np.multiply(z, LEAKY_SLOPE, out=tmp)
    np.maximum(z, tmp, out=z)


def leaky_relu_grad(a: np.ndarray, delta: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
    # Slope 1 where the output is positive, LEAKY_SLOPE elsewhere: 0.01 + 0.99 * (a > 0).
    np.greater(a, 0.0, out=mask)
    np.multiply(mask, 1.0 - LEAKY_SLOPE, out=tmp)
    tmp += LEAKY_SLOPE
    delta *= tmp


def linear(z: np.ndarray, tmp: np.ndarray) -> None:
    return None


def linear_grad(a: np.ndarray, delta: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
    return None


def softmax(z: np.ndarray, row: np.ndarray, ones: np.ndarray, index: np.ndarray,
            row_start: np.ndarray) -> None:
    """Row-wise softmax of ``z`` (n, k) in place. Scratch: ``row`` (n, 1) of z's dtype,
    ``ones`` (k,) of ones, ``index`` (n,) of intp, ``row_start`` (n,) = ``arange(n) * k``.

    numpy reduces along a short last axis slowly (a max over 10 columns costs as much as the
    exp of the whole batch), so the row maxima come from ``argmax`` and a gather, and the row
    sums from a matrix-vector product.
    """
    np.argmax(z, axis=1, out=index)
    index += row_start
    z.reshape(-1).take(index, out=row[:, 0], mode="clip")
    z -= row
    np.exp(z, out=z)
    np.matmul(z, ones, out=row[:, 0])
    z /= row


ACTIVATIONS: dict[str, Forward] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "linear": linear,
}

DERIVATIVES: dict[str, Backward] = {
    "sigmoid": sigmoid_grad,
    "tanh": tanh_grad,
    "relu": relu_grad,
    "leaky_relu": leaky_relu_grad,
    "linear": linear_grad,
}
