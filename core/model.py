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
from core.data import InvalidDataError, TargetEncoding, in_dtype
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
        X = in_dtype("X", X, self.net.dtype)
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
        arrays.update(self.metadata())
        del arrays["sizes"]  # the weight shapes say it
        return arrays

    def to_npz(self) -> bytes:
        return to_npz(self.to_arrays())

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Model:
        """From the weights .npz layout; layer widths are read off the weight shapes."""
        layers = 1
        while f"W{layers}" in arrays:
            layers += 1
        if layers == 1:
            raise InvalidDataError("weights file holds no W1")
        widths = [np.asarray(arrays[f"W{i}"]).shape[0] for i in range(1, layers)]
        widths.append(np.asarray(arrays[f"W{layers - 1}"]).shape[1])
        net, encoding, spec = _shape(arrays, widths)
        return cls(net, encoding, net.from_arrays(arrays), spec)

    @classmethod
    def from_npz(cls, data: bytes) -> Model:
        return cls.from_arrays(from_npz(data))

    def metadata(self) -> dict[str, np.ndarray]:
        """What, beside the flat parameters, rebuilds this model (``from_flat``)."""
        arrays = {"sizes": np.array(self.net.sizes, dtype=np.int64),
                  "spec": np.array(json.dumps(self.spec, sort_keys=True))}
        if self.encoding.classes is not None:
            arrays["classes"] = self.encoding.classes
        return arrays

    @classmethod
    def from_flat(cls, arrays: Mapping[str, np.ndarray], params: np.ndarray) -> Model:
        """From ``metadata()`` arrays and a flat parameter vector (e.g. a training state)."""
        net, encoding, spec = _shape(arrays, [int(n) for n in arrays["sizes"]])
        if params.shape != (net.n_params,) or params.dtype != net.dtype:
            raise InvalidDataError(f"{params.dtype} parameters of shape {params.shape} do not "
                                   f"fit a {net.dtype} network of {net.n_params}")
        return cls(net, encoding, params, spec)


def _shape(arrays: Mapping[str, np.ndarray],
           widths: list[int]) -> tuple[Network, TargetEncoding, dict[str, Any]]:
    if "spec" not in arrays:
        raise InvalidDataError("weights lack 'spec'")
    spec = json.loads(str(arrays["spec"]))
    train = TrainSpec.from_job_spec(spec)
    net = Network(tuple(widths), train.model.activation, train.model.output, train.loss,
                  np.dtype(train.dtype))
    classes = np.asarray(arrays["classes"]) if "classes" in arrays else None
    encoding = TargetEncoding("classification" if classes is not None else "regression",
                              classes, widths[-1])
    return net, encoding, spec
