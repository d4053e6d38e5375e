"""Optimizer updates and the weight-norm cap on the GPU.

Each registered optimizer (:mod:`sparse_deep.core.optimizers`) gets one
kernel, compiled the first time a fit uses it, with the optimizer's ``step``
as a device function: the definition the CPU's loops compile too. One thread
per (row, unit) of the rows being updated.
"""

import math

from numba import cuda, float64

from ...core.codes import H_L1, H_L2
from ...core.optimizers import coefficients, get_optimizer
from ...core.registry import with_globals
from . import launch
from ._device import regularised_gradient


def _update_body(param, grad, rows, n_rows, s1, s2, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9,
                 c10, c11, c12, c13, c14):
    """The update kernel of the optimizer whose ``step`` and ``n_states``
    :func:`_kernel` binds as globals. The coefficients come as scalars (an
    array would be one more copy to the device per call)."""
    k = (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14)
    n = param.shape[1]
    for idx in range(cuda.grid(1), n_rows * n, cuda.gridsize(1)):
        r = idx // n
        j = idx - r * n
        row = rows[r]
        w = param[row, j]
        g = regularised_gradient(grad[r, j], w, k[H_L2], k[H_L1])
        a = s1[row, j] if n_states >= 1 else 0.0
        b = s2[row, j] if n_states >= 2 else 0.0
        w, a, b = step(w, g, a, b, k)
        param[row, j] = w
        if n_states >= 1:
            s1[row, j] = a
        if n_states >= 2:
            s2[row, j] = b


_KERNELS = {}  # (optimizer name, fingerprint) -> its kernel


def _kernel(code):
    optimizer = get_optimizer(code)
    key = optimizer.name, optimizer.fingerprint  # computed once per registration
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = cuda.jit(with_globals(
            _update_body, n_states=optimizer.n_states, step=cuda.jit(device=True)(optimizer.step)))
    return kernel


def update_rows(param, grad, rows, n_rows, state1, state2, code, hyper, stream):
    """One optimizer step on rows ``rows[:n_rows]`` of ``param`` (the CPU
    kernel's contract: ``grad[r]`` belongs to row ``rows[r]``; states an
    optimizer does not keep may be one-row dummies and are never touched)."""
    if n_rows == 0:
        return
    blocks, threads = launch.elementwise(n_rows * param.shape[1])
    c = [float(x) for x in coefficients(hyper, "float64")]
    _kernel(code)[blocks, threads, stream](param, grad, rows, int(n_rows), state1, state2, *c)


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
