"""The network's shape and its parameters, held in one flat vector.

Every weight matrix and bias vector is a view into a single contiguous array, and so is every
gradient: a whole model's gradient is then one buffer, averaged with one vector operation and
sent between workers as raw bytes with no packing step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np

from core.spec import TrainSpec

# Independent random streams per purpose, so that e.g. changing the hold-out never changes
# the initial weights (numpy SeedSequence entropy: [seed, stream, ...]).
STREAM_INIT = 0
STREAM_HOLDOUT = 1
STREAM_SHARD_ORDER = 2
STREAM_INGEST = 3
STREAM_INGEST_BUCKET = 4


@dataclass(frozen=True)
class Network:
    """Layer widths ``sizes = (n_in, h_1, ..., n_out)`` and the activations between them."""

    sizes: tuple[int, ...]
    activation: str
    output: str
    loss: str
    dtype: np.dtype

    @classmethod
    def from_spec(cls, spec: TrainSpec, n_in: int, n_out: int) -> Network:
        return cls(sizes=(n_in, *spec.model.hidden, n_out), activation=spec.model.activation,
                   output=spec.model.output, loss=spec.loss, dtype=np.dtype(spec.dtype))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @cached_property
    def shapes(self) -> list[tuple[tuple[int, int], int]]:
        """(W shape, b length) per layer; W is (fan_in, fan_out) so ``a = f(a_prev @ W + b)``."""
        return [((fi, fo), fo) for fi, fo in pairwise(self.sizes)]

    @cached_property
    def n_params(self) -> int:
        return sum(fi * fo + fo for (fi, fo), _ in self.shapes)

    @property
    def param_bytes(self) -> int:
        """The bytes of one parameter (or gradient) vector."""
        return self.n_params * self.dtype.itemsize

    def empty(self) -> np.ndarray:
        return np.zeros(self.n_params, dtype=self.dtype)

    def views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Weight matrices and bias vectors as views into ``flat`` (no copy)."""
        if flat.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} parameters, got shape {flat.shape}")
        weights, biases, start = [], [], 0
        for (fi, fo), n_b in self.shapes:
            weights.append(flat[start:start + fi * fo].reshape(fi, fo))
            start += fi * fo
            biases.append(flat[start:start + n_b])
            start += n_b
        return weights, biases

    def weight_mask(self) -> np.ndarray:
        """1 on weights, 0 on biases: L2 decay applies to weights only (SPEC section 3)."""
        mask = self.empty()
        for w in self.views(mask)[0]:
            w[...] = 1.0
        return mask

    def init_params(self, seed: int, scheme: str) -> np.ndarray:
        """Seeded Xavier (uniform) or He (normal) weights, zero biases; drawn in float64 so
        float32 and float64 jobs start from the same values up to rounding."""
        rng = np.random.default_rng([seed, STREAM_INIT])
        flat = self.empty()
        for w, ((fi, fo), _) in zip(self.views(flat)[0], self.shapes, strict=True):
            if scheme == "xavier":
                limit = np.sqrt(6.0 / (fi + fo))
                w[...] = rng.uniform(-limit, limit, size=(fi, fo))
            elif scheme == "he":
                w[...] = rng.standard_normal((fi, fo)) * np.sqrt(2.0 / fi)
            else:
                raise ValueError(f"unknown init scheme {scheme!r}")
        return flat

    def to_arrays(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """``W1, b1, W2, b2, ...`` as in the weights .npz (SPEC section 7), copied."""
        weights, biases = self.views(flat)
        out: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
            out[f"W{i}"], out[f"b{i}"] = w.copy(), b.copy()
        return out

    def from_arrays(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """The flat vector from ``W1, b1, ...``; shapes must match this network exactly."""
        flat = self.empty()
        weights, biases = self.views(flat)
        for i, ((w_shape, b_len), w, b) in enumerate(
                zip(self.shapes, weights, biases, strict=True), start=1):
            for name, shape, view in ((f"W{i}", w_shape, w), (f"b{i}", (b_len,), b)):
                if name not in arrays:
                    raise ValueError(f"initial weights lack {name}")
                given = np.asarray(arrays[name])
                if given.shape != shape:
                    raise ValueError(f"initial weights {name} have shape {given.shape}, "
                                     f"this network needs {shape}")
                if not np.all(np.isfinite(given)):
                    raise ValueError(f"initial weights {name} hold NaN or Inf")
                view[...] = given
        extra = [k for k in arrays if k[:1] in "Wb" and k[1:].isdigit()
                 and int(k[1:]) > self.n_layers]
        if extra:
            raise ValueError(f"initial weights have more layers than this network: {extra}")
        return flat


def layer_flops(sizes: Sequence[int]) -> int:
    """Multiply-add FLOP per row of one training step: forward, weight gradient, and the input
    gradient of every layer but the first (which backprop never needs)."""
    total = 0
    for i, (fi, fo) in enumerate(pairwise(sizes)):
        total += (2 if i == 0 else 3) * 2 * fi * fo
    return total
