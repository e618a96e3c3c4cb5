"""Backpropagation against central finite differences, in float64 (SPEC section 3)."""

from __future__ import annotations

import numpy as np
import pytest

from core.backprop import Workspace
from core.network import Network
from core.spec import HIDDEN_ACTIVATIONS, LOSS_OUTPUTS
from tests.utils.gradients import mean_gradient

PAIRS = [(output, loss) for loss, outputs in LOSS_OUTPUTS.items() for output in outputs]


def _targets(rng: np.random.Generator, output: str, loss: str, n: int, k: int) -> np.ndarray:
    if loss == "cross_entropy":
        return np.eye(k)[rng.integers(0, k, size=n)]
    if loss == "binary_cross_entropy":
        return rng.uniform(0.05, 0.95, size=(n, k))
    return rng.normal(size=(n, k))


def _mean_loss(net: Network, params: np.ndarray, X: np.ndarray, Y: np.ndarray) -> float:
    ws = Workspace(net, X.shape[0])
    ws.inputs[:] = X
    ws.targets[:] = Y
    ws.forward(*net.views(params), X.shape[0])
    return ws.loss_sum(X.shape[0]) / X.shape[0]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize(("output", "loss"), PAIRS)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_gradient_matches_central_differences(activation: str, output: str, loss: str,
                                              depth: int) -> None:
    rng = np.random.default_rng(depth)
    sizes = (4, *[5 - i for i in range(depth)], 3)
    net = Network(sizes, activation, output, loss, np.dtype(np.float64))
    params = rng.normal(scale=0.8, size=net.n_params)
    X = rng.normal(size=(7, sizes[0]))
    Y = _targets(rng, output, loss, 7, sizes[-1])

    loss_value, grad = mean_gradient(net, params, X, Y)
    assert loss_value == pytest.approx(_mean_loss(net, params, X, Y), rel=1e-12)

    h = 1e-6
    numeric = np.empty_like(params)
    for i in range(net.n_params):
        step = np.zeros_like(params)
        step[i] = h
        numeric[i] = (_mean_loss(net, params + step, X, Y)
                      - _mean_loss(net, params - step, X, Y)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_loss_values_match_the_spec_formulas() -> None:
    """Tiny hand-checkable cases of SPEC section 3's averaged losses."""
    p = np.array([[0.25, 0.75]])
    y = np.array([[0.0, 1.0]])
    net_ce = Network((2, 2), "linear", "softmax", "cross_entropy", np.dtype(np.float64))
    net_mse = Network((2, 2), "linear", "linear", "mse", np.dtype(np.float64))
    net_bce = Network((2, 2), "linear", "sigmoid", "binary_cross_entropy", np.dtype(np.float64))
    for net, expected in ((net_ce, -np.log(0.75)),
                          (net_mse, 0.25**2 + 0.25**2),
                          (net_bce, -(np.log(0.75) + np.log(0.75)))):
        ws = Workspace(net, 1)
        ws.acts[-1][:] = p
        ws.targets[:] = y
        assert ws.loss_sum(1) == pytest.approx(expected, rel=1e-12)
