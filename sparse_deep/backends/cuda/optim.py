"""Optimizer updates and the weight-norm cap on the GPU.

The update of each weight is :func:`sparse_deep.core.scalar.optimizer_step`,
the generic definition every backend shares (the CPU backend keeps hand-
vectorised copies of it for speed; its tests check both against the formulas of
docs/engine.md). One thread per (row, unit) of the rows being updated.
"""

import math

from numba import cuda, float64

from ...core.codes import ADADELTA, ADAM, SGD
from . import launch
from ._device import optimizer_step, regularised_gradient


@cuda.jit
def _update_rows(param, grad, rows, n_rows, s1, s2, code, lr, mu, rho, beta1, beta2, eps, c1,
                 c2, l2, l1):
    n = param.shape[1]
    uses_s1 = code != SGD
    uses_s2 = code == ADADELTA or code == ADAM
    for idx in range(cuda.grid(1), n_rows * n, cuda.gridsize(1)):
        r = idx // n
        j = idx - r * n
        row = rows[r]
        w = param[row, j]
        g = regularised_gradient(grad[r, j], w, l2, l1)
        a = s1[row, j] if uses_s1 else 0.0
        b = s2[row, j] if uses_s2 else 0.0
        w, a, b = optimizer_step(code, w, g, a, b, lr, mu, rho, beta1, beta2, eps, c1, c2)
        param[row, j] = w
        if uses_s1:
            s1[row, j] = a
        if uses_s2:
            s2[row, j] = b


def update_rows(param, grad, rows, n_rows, state1, state2, code, hyper, stream):
    """One optimizer step on rows ``rows[:n_rows]`` of ``param`` (the CPU
    kernel's contract: ``grad[r]`` belongs to row ``rows[r]``; states an
    optimizer does not keep may be one-row dummies and are never touched)."""
    if n_rows == 0:
        return
    lr, mu, rho, beta1, beta2, eps, c1, c2, l2, l1 = (float(h) for h in hyper)  # OPTIMIZER_HYPER
    blocks, threads = launch.elementwise(n_rows * param.shape[1])
    _update_rows[blocks, threads, stream](param, grad, rows, int(n_rows), state1, state2,
                                          int(code), lr, mu, rho, beta1, beta2, eps, c1, c2,
                                          l2, l1)


@cuda.jit
def _cap_column_norms(weights, max_norm):
    n_in = weights.shape[0]
    for j in range(cuda.grid(1), weights.shape[1], cuda.gridsize(1)):
        s = float64(0.0)
        for i in range(n_in):
            s += weights[i, j] * weights[i, j]
        norm = math.sqrt(s)
        if norm > max_norm:
            scale = max_norm / norm
            for i in range(n_in):
                weights[i, j] = float64(weights[i, j]) * scale


def cap_column_norms(weights, max_norm, stream):
    """DSSTNE's WeightNorm: one thread per output unit rescales its column."""
    blocks, threads = launch.elementwise(weights.shape[1])
    _cap_column_norms[blocks, threads, stream](weights, float(max_norm))
