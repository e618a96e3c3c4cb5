"""Optimizers as objects with their own state, stepping a flat parameter vector in place.

Each keeps its buffers from construction on, so a step allocates nothing. ``state()`` and
``load_state()`` round-trip everything a resumed run needs to continue bit-identically.

``gradient_scale`` is a factor the caller folds into the gradient before ``step``: SGD is linear
in the gradient, so its learning rate is applied to the (rows x outputs) error signal of the
output layer instead of to every parameter, and its step is then a single pass over memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from core.spec import OptimizerSpec


class Optimizer(Protocol):
    def step(self, params: np.ndarray, grad: np.ndarray) -> None: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def load_state(self, state: dict[str, np.ndarray]) -> None: ...


class SGD:
    """``v = momentum * v - lr * g``; ``p += v`` (or, Nesterov, ``p += momentum * v - lr * g``).

    ``step`` takes ``lr * g``: the learning rate is folded in by ``gradient_scale``.
    """

    def __init__(self, n: int, dtype: np.dtype, *, momentum: float = 0.0,
                 nesterov: bool = False) -> None:
        self.momentum, self.nesterov = momentum, nesterov
        # Without momentum there is no state: nothing to keep, checkpoint or send to a rank.
        self.velocity = np.zeros(n if momentum else 0, dtype=dtype)
        self._tmp = np.empty(n if nesterov else 0, dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        if self.momentum == 0.0:
            params -= grad
            return
        self.velocity *= self.momentum
        self.velocity -= grad
        if self.nesterov:
            params -= grad
            params += np.multiply(self.velocity, self.momentum, out=self._tmp)
        else:
            params += self.velocity

    def state(self) -> dict[str, np.ndarray]:
        return {"velocity": self.velocity} if self.momentum else {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if self.momentum:
            self.velocity[...] = state["velocity"]


class Adam:
    """Adam (Kingma and Ba) with the bias correction folded into the step size."""

    def __init__(self, n: int, dtype: np.dtype, *, lr: float, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m = np.zeros(n, dtype=dtype)
        self.v = np.zeros(n, dtype=dtype)
        self._tmp = np.empty(n, dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        self.t += 1
        tmp = self._tmp
        self.m *= self.beta1
        self.m += np.multiply(grad, 1.0 - self.beta1, out=tmp)
        self.v *= self.beta2
        np.square(grad, out=tmp)
        tmp *= 1.0 - self.beta2
        self.v += tmp
        step = self.lr * math.sqrt(1.0 - self.beta2 ** self.t) / (1.0 - self.beta1 ** self.t)
        np.sqrt(self.v, out=tmp)
        tmp += self.eps
        np.divide(self.m, tmp, out=tmp)
        tmp *= step
        params -= tmp

    def state(self) -> dict[str, np.ndarray]:
        return {"m": self.m, "v": self.v, "t": np.array([self.t], dtype=np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.m[...] = state["m"]
        self.v[...] = state["v"]
        self.t = int(state["t"][0])


def make_optimizer(spec: OptimizerSpec, n: int, dtype: np.dtype) -> Optimizer:
    if spec.name == "sgd":
        return SGD(n, dtype, momentum=spec.momentum, nesterov=spec.nesterov)
    if spec.name == "adam":
        return Adam(n, dtype, lr=spec.lr, beta1=spec.beta1, beta2=spec.beta2, eps=spec.eps)
    raise ValueError(f"unknown optimizer {spec.name!r}")


def gradient_scale(spec: OptimizerSpec) -> float:
    """The factor every shard folds into its gradient for this optimizer (see the module doc):
    SGD's learning rate; 1 for Adam, whose moments need the gradient itself."""
    return spec.lr if spec.name == "sgd" else 1.0


def state_arrays(optimizer: Optimizer) -> list[np.ndarray]:
    """The optimizer's state as arrays in a fixed order, to send as raw bytes."""
    state = optimizer.state()
    return [state[name] for name in sorted(state)]


def load_state_arrays(optimizer: Optimizer, buffers: Sequence[bytes | memoryview]) -> None:
    """Load the state from raw buffers in the order of ``state_arrays``, each of the dtype
    and shape that this optimizer's own state has."""
    state = optimizer.state()
    optimizer.load_state({
        name: np.frombuffer(buffer, state[name].dtype).reshape(state[name].shape)
        for name, buffer in zip(sorted(state), buffers, strict=True)})


OptimizersByShard = Sequence[Optimizer] | Mapping[int, Optimizer]
"""Local SGD's optimizers, one per shard: a list over every shard, or a rank's by shard."""


def shard_states(optimizers: OptimizersByShard, shards: list[int]) -> list[np.ndarray]:
    """The ``state_arrays`` of the optimizers of ``shards``, one shard after the other."""
    return [array for shard in shards for array in state_arrays(optimizers[shard])]


def load_shard_states(optimizers: OptimizersByShard, shards: list[int],
                      buffers: Sequence[bytes | memoryview]) -> None:
    """Load into the optimizers of ``shards`` the buffers of ``shard_states``, in order."""
    per_shard = len(buffers) // len(shards)
    for i, shard in enumerate(shards):
        load_state_arrays(optimizers[shard], buffers[i * per_shard:(i + 1) * per_shard])
