"""The single-process reference that sharded gradients are checked against."""

from __future__ import annotations

import numpy as np

from core.backprop import Workspace
from core.network import Network


def mean_gradient(net: Network, params: np.ndarray, X: np.ndarray,
                  Y: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean loss, mean gradient as a flat vector) of one batch ``X`` (rows, n_in) against
    ``Y`` (rows, n_out), in fresh buffers."""
    rows = X.shape[0]
    ws = Workspace(net, rows)
    ws.inputs[:] = X
    ws.targets[:] = Y
    grad = net.empty()
    loss = ws.gradient(*net.views(params), *net.views(grad), rows, 1.0 / rows)
    return loss / rows, grad
