"""Forward and backward passes over preallocated buffers.

A ``Workspace`` holds every array one step needs for up to ``capacity`` rows: the activations of
each layer, the error signals, and scratch. A step only writes into slices of them, so training
allocates nothing after the workspace is built and memory does not grow with epochs.
"""

from __future__ import annotations

import numpy as np

from core.activations import ACTIVATIONS, DERIVATIVES, sigmoid, softmax
from core.losses import LOSS_VALUES, OUTPUT_DELTAS
from core.network import Network


class Workspace:
    """Buffers for one network and at most ``capacity`` rows per pass."""

    def __init__(self, net: Network, capacity: int) -> None:
        self.net = net
        self.capacity = capacity
        dtype = net.dtype
        # acts[0] is the input batch, filled by the caller; acts[l] the output of layer l.
        self.acts = [np.empty((capacity, n), dtype=dtype) for n in net.sizes]
        self.deltas = [np.empty((capacity, n), dtype=dtype) for n in net.sizes]
        self.tmps = [np.empty((capacity, n), dtype=dtype) for n in net.sizes]
        self.masks = [np.empty((capacity, n), dtype=bool) for n in net.sizes]
        self.targets = np.empty((capacity, net.sizes[-1]), dtype=dtype)
        self.row = np.empty((capacity, 1), dtype=dtype)
        # Column and row sums as matrix-vector products: BLAS beats numpy's axis reductions
        # on these short axes several times over.
        self.ones = np.ones(max(capacity, *net.sizes), dtype=dtype)
        self.index = np.empty(capacity, dtype=np.intp)
        self.row_start = np.arange(capacity, dtype=np.intp) * net.sizes[-1]
        self._hidden = ACTIVATIONS[net.activation]
        self._hidden_grad = DERIVATIVES[net.activation]
        self._loss = LOSS_VALUES[net.loss]
        self._delta = OUTPUT_DELTAS[(net.output, net.loss)]

    @property
    def inputs(self) -> np.ndarray:
        """(capacity, n_in): write a batch's rows here before ``forward``."""
        return self.acts[0]

    def forward(self, weights: list[np.ndarray], biases: list[np.ndarray], rows: int) -> np.ndarray:
        """Output activations (rows, n_out) for the first ``rows`` rows of ``inputs``."""
        last = self.net.n_layers - 1
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = self.acts[i + 1][:rows]
            np.matmul(self.acts[i][:rows], w, out=z)
            z += b
            if i < last:
                self._hidden(z, self.tmps[i + 1][:rows])
            elif self.net.output == "softmax":
                softmax(z, self.row[:rows], self.ones[:z.shape[1]], self.index[:rows],
                        self.row_start[:rows])
            elif self.net.output == "sigmoid":
                sigmoid(z, self.tmps[i + 1][:rows])
        return self.acts[-1][:rows]

    def loss_sum(self, rows: int) -> float:
        """Loss summed over rows, of the last ``forward`` against ``targets``."""
        top = self.net.n_layers
        return self._loss(self.acts[top][:rows], self.targets[:rows],
                          self.tmps[top][:rows], self.deltas[top][:rows])

    def gradient(self, weights: list[np.ndarray], biases: list[np.ndarray],
                 grad_w: list[np.ndarray], grad_b: list[np.ndarray], rows: int,
                 scale: float = 1.0) -> float:
        """Forward and backward on ``rows`` rows of ``inputs``/``targets``.

        Writes ``scale`` times the gradient of the *summed* loss into ``grad_w``/``grad_b``
        (views of one flat buffer) and returns the unscaled sum. Scaling the output error
        signal, a (rows, n_out) array, costs far less than scaling the whole gradient after.
        """
        if rows == 0:
            for g in (*grad_w, *grad_b):
                g.fill(0.0)
            return 0.0
        self.forward(weights, biases, rows)
        loss = self.loss_sum(rows)
        top = self.net.n_layers
        delta = self.deltas[top][:rows]
        self._delta(self.acts[top][:rows], self.targets[:rows], delta,
                    self.tmps[top][:rows], self.row[:rows])
        if scale != 1.0:
            delta *= scale
        for i in range(top - 1, -1, -1):
            np.matmul(self.acts[i][:rows].T, delta, out=grad_w[i])
            np.matmul(self.ones[:rows], delta, out=grad_b[i])
            if i == 0:
                break  # the input's own gradient is never needed
            below = self.deltas[i][:rows]
            np.matmul(delta, weights[i].T, out=below)
            self._hidden_grad(self.acts[i][:rows], below, self.tmps[i][:rows],
                              self.masks[i][:rows])
            delta = below
        return loss

