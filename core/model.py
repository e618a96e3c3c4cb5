"""A trained model: weights, shape and label encoding; prediction and the weights .npz layout.

The .npz holds ``W1, b1, W2, b2, ...`` (``W_l`` is fan_in x fan_out, ``b_l`` fan_out, so
``a_l = f(a_{l-1} @ W_l + b_l)``), ``spec`` (the job spec as JSON text) and, for classifiers,
``classes`` (the label of each output column). Everything needed to predict without the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.backprop import Workspace
from core.data import InvalidDataError, TargetEncoding
from core.network import Network
from core.npz import from_npz, to_npz
from core.spec import TrainSpec

PREDICT_CHUNK = 4096


@dataclass(frozen=True)
class Prediction:
    outputs: np.ndarray  # (n, n_out) output activations
    labels: np.ndarray | None  # (n,) class labels, None for regression


@dataclass(frozen=True)
class Model:
    net: Network
    encoding: TargetEncoding
    params: np.ndarray
    spec: dict[str, Any]

    def predict(self, X: np.ndarray) -> Prediction:
        X = np.asarray(X)
        n_in = self.net.sizes[0]
        if X.ndim != 2 or X.shape[1] != n_in:
            raise InvalidDataError(f"X must have shape (rows, {n_in}), got {X.shape}")
        if X.dtype.kind not in "biuf" or not np.all(np.isfinite(X)):
            raise InvalidDataError("X must hold finite numbers")
        outputs = np.empty((X.shape[0], self.net.sizes[-1]), dtype=self.net.dtype)
        ws = Workspace(self.net, max(1, min(PREDICT_CHUNK, X.shape[0])))
        weights, biases = self.net.views(self.params)
        for start in range(0, X.shape[0], ws.capacity):
            n = min(ws.capacity, X.shape[0] - start)
            ws.inputs[:n] = X[start:start + n]
            outputs[start:start + n] = ws.forward(weights, biases, n)
        return Prediction(outputs, self.encoding.decode(outputs))

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = self.net.to_arrays(self.params)
        arrays["spec"] = np.array(json.dumps(self.spec, sort_keys=True))
        if self.encoding.classes is not None:
            arrays["classes"] = self.encoding.classes
        return arrays

    def to_npz(self) -> bytes:
        return to_npz(self.to_arrays())

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Model:
        if "spec" not in arrays:
            raise InvalidDataError("weights file lacks 'spec'")
        spec_dict = json.loads(str(arrays["spec"]))
        train = TrainSpec.from_dict({k: v for k, v in spec_dict.items()
                                     if k in TrainSpec.__dataclass_fields__})
        layers, sizes = 1, []
        while f"W{layers}" in arrays:
            w = np.asarray(arrays[f"W{layers}"])
            sizes.append(w.shape[0])
            layers += 1
        if not sizes:
            raise InvalidDataError("weights file holds no W1")
        sizes.append(np.asarray(arrays[f"W{layers - 1}"]).shape[1])
        net = Network(tuple(sizes), train.model.activation, train.model.output, train.loss,
                      np.dtype(train.dtype))
        classes = np.asarray(arrays["classes"]) if "classes" in arrays else None
        encoding = TargetEncoding("classification" if classes is not None else "regression",
                                  classes, sizes[-1])
        return cls(net, encoding, net.from_arrays(arrays), spec_dict)

    @classmethod
    def from_npz(cls, data: bytes) -> Model:
        return cls.from_arrays(from_npz(data))
