"""The GEMM bound: the least time the matrix products of one step can take here."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from bench.core.config import SEED


def time_call(fn: Callable[[], object], blocks: int = 20, block_s: float = 0.01) -> float:
    """Seconds of one call: the fastest of ``blocks`` blocks of calls lasting ``block_s`` each.

    The fastest, not the median: a bound is what the hardware can do, and on a shared machine
    other processes only ever make a block slower. Two-thread GEMMs suffer most: while another
    process holds a core, each call waits a scheduler slice for its second thread; 20 blocks
    spread the samples over a fifth of a second per product to catch a quiet moment.
    """
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < block_s:
        fn()
        calls += 1
    best = math.inf
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def gemm_bound(sizes: tuple[int, ...], batch: int) -> dict[str, Any]:
    """Time the float32 GEMMs one SGD step of an MLP with layer ``sizes`` needs at ``batch`` rows.

    Per layer (fan_in, fan_out): the forward product, the weight gradient, and for every layer
    but the first the input gradient, each 2 * batch * fan_in * fan_out FLOP. The sum of their
    measured times is the least a step can take; ``batch_s`` is that sum.
    """
    rng = np.random.default_rng(SEED)
    batch_s, flops = 0.0, 0
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        a = rng.random((batch, fan_in), dtype=np.float32)
        w = rng.random((fan_in, fan_out), dtype=np.float32)
        delta = rng.random((batch, fan_out), dtype=np.float32)
        z, dw, da = np.empty_like(delta), np.empty_like(w), np.empty_like(a)
        # Transposed operands as backprop uses them: views, which BLAS reads without a copy.
        products = [partial(np.matmul, a, w, out=z), partial(np.matmul, a.T, delta, out=dw)]
        if layer > 0:
            products.append(partial(np.matmul, delta, w.T, out=da))
        batch_s += sum(time_call(p) for p in products)
        flops += len(products) * 2 * batch * fan_in * fan_out
    return {"batch_s": batch_s, "gflops": flops / batch_s / 1e9}
